"""Writes the recovered model as an ekv-export folder of exactly the input's format: the same
files, tensor names, dtypes and safetensors metadata, config.json with an ekv_uptrain
provenance block, and decode-pack.h5 rewritten by `ekv-export pack` from the new weights.
The folder is built as OUTPUT.partial and renamed into place: a crash leaves no OUTPUT."""
import json
import os
import shutil
from pathlib import Path

import h5py
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .models import run_tool, tool

WEIGHTS, PACK = "model.safetensors", "decode-pack.h5"
_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def staging_path(output):
    # Not "*.tmp": ekv's readers refuse those as a crash's leftovers, and ekv-export pack reads it.
    return Path(str(output) + ".partial")


def write_export(source, output, student, provenance, tools_dir):
    source, output = Path(source), Path(output)
    staging = staging_path(output)
    if staging.exists():
        shutil.rmtree(staging)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(WEIGHTS, PACK, "*.ekv-sha256", "*.tmp"))
        state = student.state_dict()
        with safe_open(source / WEIGHTS, "pt") as f:
            metadata = f.metadata()
            names = list(f.keys())
            tensors = {}
            for name in names:
                dtype = f.get_slice(name).get_dtype()
                tensors[name] = state[name].detach().to(getattr(torch, _DTYPES[dtype])).contiguous()
        save_file(tensors, str(staging / WEIGHTS), metadata=metadata)
        config = json.loads((source / "config.json").read_text())
        config["ekv_uptrain"] = provenance
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        with h5py.File(source / PACK, "r") as pack:
            cache_dtype, positions = pack.attrs["cache_dtype"], int(pack.attrs["positions"])
        cache_dtype = cache_dtype.decode() if isinstance(cache_dtype, bytes) else str(cache_dtype)
        run_tool(tool(tools_dir, "ekv-export"), "pack", "--compressed", staging, "--cache-dtype", cache_dtype,
                 "--pack-positions", positions)
        for path in staging.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        old = Path(str(output) + ".old")
        if output.exists():
            os.replace(output, old)
        os.replace(staging, output)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
