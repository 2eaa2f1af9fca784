"""The two models of a recovery: the compressed student (an ekv-export folder) and the original
teacher it was made from. The pair must chain: the export records its source's fingerprint
(config.json ekv_source), and ekv-info prints the fingerprint of the model given, so a teacher
that is not the export's source is refused before any work."""
import json
import os
import subprocess
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

from ..configuration_elitekv import EliteKVConfig
from ..modeling_elitekv import EliteKVForCausalLM


# transformers' notices about generate() and remote code are not this tool's business.
transformers.logging.set_verbosity_error()


class ChainError(RuntimeError):
    pass


def tool(tools_dir, name):
    path = Path(tools_dir) / name
    if not os.access(path, os.X_OK):
        raise ChainError(f"{path}: the ekv tool {name} is not there (build it: scripts/build.sh --tools)")
    return str(path)


def run_tool(*command):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:  # the tool's error lines, without its first line (version, command)
        lines = result.stderr.strip().splitlines()
        said = "\n".join(line for line in lines if line.startswith("error: ")) or "\n".join(lines)
        raise ChainError(f"{Path(str(command[0])).name} {' '.join(map(str, command[1:]))} exited "
                         f"{result.returncode}: {said}")
    return result.stdout


def model_fingerprint(tools_dir, model):
    for line in run_tool(tool(tools_dir, "ekv-info"), model).splitlines():
        if line.startswith("fingerprint: "):
            return line.split(": ", 1)[1].strip()
    raise ChainError(f"{model}: ekv-info printed no fingerprint: not a model")


def export_config(export):
    path = Path(export) / "config.json"
    if not path.is_file():
        raise ChainError(f"{path}: no such file: {export} is not an ekv-export folder")
    try:
        config = json.loads(path.read_text())
    except ValueError as error:
        raise ChainError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(config, dict) or "elitekv_kv_rank" not in config:
        raise ChainError(f"{path}: no elitekv_kv_rank: not an EliteKV export (make one with ekv-export)")
    if "fingerprint" not in config.get("ekv_source", {}):
        raise ChainError(f"{path}: ekv_source.fingerprint is missing: cannot tell which model it came from")
    return config


def require_export(tools_dir, export):
    """The export's config.json, after refusing a folder the student cannot be built from, naming
    the file and field: the files it needs, and its config as ekv reads it (ekv-info validates
    every field: counts, one rank and one elite list per layer, refusals of what ekv does not
    implement)."""
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if not (Path(export) / name).is_file():
            raise ChainError(f"{Path(export) / name}: no such file: an ekv-export folder holds config.json, "
                             f"tokenizer.json and model.safetensors")
    config = export_config(export)
    run_tool(tool(tools_dir, "ekv-info"), export)
    return config


def require_chain(tools_dir, export, model):
    """The original's fingerprint, after checking that `export` was made from `model`."""
    recorded = require_export(tools_dir, export)["ekv_source"]["fingerprint"]
    actual = model_fingerprint(tools_dir, model)
    if actual != recorded:
        raise ChainError(f"{export}/config.json: ekv_source.fingerprint {recorded[:16]}… is not the fingerprint of "
                         f"{model} ({actual[:16]}…): the export was not made from this model")
    return actual


def teacher_folder(tools_dir, model, fingerprint, cache):
    """An HF folder transformers loads: `model` itself, or its ekv-convert copy (f32) in `cache`."""
    model = Path(model)
    if model.is_dir():
        return model
    folder = Path(cache) / f"teacher-{fingerprint[:16]}"
    if not (folder / "config.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        run_tool(tool(tools_dir, "ekv-convert"), "--model", model, "--dtype", "f32", "-o", folder)
    return folder


def load_teacher(folder):
    # Eager attention: Debian's torch 1.13 has no SDPA (transformers needs torch >= 2.1.1 for it).
    # Auto: the original is a LLaMA or a Qwen2 (config.json model_type says which).
    teacher = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager")
    teacher.eval().requires_grad_(False)
    return teacher


def load_student(export):
    config = EliteKVConfig.from_pretrained(export)
    student = EliteKVForCausalLM.from_pretrained(export, config=config, torch_dtype=torch.float32)
    student.eval()
    return student


ATTENTION_PARTS = ("q_proj", "k_rope_proj", "kv_a_proj", "k_b_proj", "v_b_proj", "o_proj")


def trainable_attention(module, parts):
    """The named parameters of one EliteKVAttention (or a whole model) in `parts`."""
    return [(name, p) for name, p in module.named_parameters() if name.split(".")[-2] in parts]
