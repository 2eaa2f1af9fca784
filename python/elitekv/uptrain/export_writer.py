"""Writes the recovered model as an ekv-export folder of exactly the input's format: the same
files, tensor names, dtypes and safetensors metadata, the trained tensors from the student and
every other one copied from the input (the student may hold frozen weights in bf16), config.json
with an ekv_uptrain provenance block, and decode-pack.h5 rewritten by `ekv-export pack` from the new weights.
The folder is built as OUTPUT.partial (which ekv's readers refuse) and renamed into place: a
crash leaves either the previous OUTPUT, complete, or none (then OUTPUT.old holds the previous)."""
import json
import os
import shutil
from pathlib import Path

import h5py
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .failpoint import failpoint
from .models import run_tool, tool

WEIGHTS, PACK = "model.safetensors", "decode-pack.h5"
_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def staging_path(output):
    # Not "*.tmp", which ekv-export pack would also refuse; it reads this one with --staging.
    return Path(str(output) + ".partial")


def write_export(source, output, trained, provenance, tools_dir):
    """`trained`: the student's parameters that training changed, named as in the export."""
    source, output = Path(source), Path(output)
    staging = staging_path(output)
    old = Path(str(output) + ".old")
    if staging.exists():  # an interrupted run's half-built folder
        shutil.rmtree(staging)
    if old.exists() and output.exists():  # a run killed after its output was in place
        shutil.rmtree(old)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(WEIGHTS, PACK, "*.ekv-sha256", "*.tmp"))
        trained = dict(trained)
        with safe_open(source / WEIGHTS, "pt") as f:
            metadata = f.metadata()
            names = list(f.keys())
            tensors = {}
            for name in names:
                dtype = getattr(torch, _DTYPES[f.get_slice(name).get_dtype()])
                tensor = trained[name].detach().cpu() if name in trained else f.get_tensor(name)
                tensors[name] = tensor.to(dtype).contiguous()
        save_file(tensors, str(staging / WEIGHTS), metadata=metadata)
        failpoint("uptrain-write")
        config = json.loads((source / "config.json").read_text())
        config["ekv_uptrain"] = provenance
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        with h5py.File(source / PACK, "r") as pack:
            cache_dtype, positions = pack.attrs["cache_dtype"], int(pack.attrs["positions"])
        cache_dtype = cache_dtype.decode() if isinstance(cache_dtype, bytes) else str(cache_dtype)
        run_tool(tool(tools_dir, "ekv-export"), "pack", "--staging", "--compressed", staging,
                 "--cache-dtype", cache_dtype, "--pack-positions", positions)
        for path in staging.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        failpoint("uptrain-commit")
        if output.exists():
            os.replace(output, old)
        failpoint("uptrain-replaced")
        os.replace(staging, output)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
