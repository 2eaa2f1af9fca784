"""safetensors interoperability with the reference `safetensors` package and transformers.

1. A file written by the Python package (F32, F16, BF16, I64, scalar, empty, metadata) is
   read by ekv and written again by ekv's writer; the Python package reads that copy back
   with identical names, dtypes, shapes, bytes and metadata.
2. A tiny LLaMA saved by transformers (bf16, tied embeddings; single file and sharded with an
   index) is read by ekv-convert; its f32 output equals the checkpoint's own values."""
import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from peer_common import env_path, report, run, workdir

tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("safetensors")
lines, failures = [], []
torch.manual_seed(0)

# 1. byte-exact round trip through ekv's reader and writer
tensors = {
    "a.f32": torch.randn(3, 5),
    "b.f16": torch.randn(7).half(),
    "c.bf16": torch.randn(2, 2, 3).bfloat16(),
    "d.i64": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    "e.scalar": torch.tensor(2.5),
    "f.empty": torch.zeros(0, 4),
}
metadata = {"format": "pt", "note": "peer test"}
source = os.path.join(work, "python.safetensors")
copy = os.path.join(work, "ekv.safetensors")
save_file(tensors, source, metadata=metadata)
run(tool, "copy-safetensors", source, copy)
back = load_file(copy)
with safe_open(copy, framework="pt") as handle:
    back_metadata = handle.metadata()
if back_metadata != metadata:
    failures.append(f"metadata {back_metadata} != {metadata}")
for name, tensor in tensors.items():
    other = back.get(name)
    if other is None:
        failures.append(f"{name}: missing after the ekv copy")
    elif other.dtype != tensor.dtype or other.shape != tensor.shape or not torch.equal(other, tensor):
        failures.append(f"{name}: differs after the ekv copy ({other.dtype} {tuple(other.shape)})")
    else:
        lines.append(f"{name}: {tensor.dtype} {tuple(tensor.shape)} identical after python -> ekv -> python")

# 2. transformers checkpoints (single and sharded) through ekv-convert
config = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                     rope_theta=50000.0, tie_word_embeddings=True)
model = LlamaForCausalLM(config).to(torch.bfloat16)
expected = {k: v.float() for k, v in model.state_dict().items() if k != "lm_head.weight"}
for label, shard_size in [("single", "10GB"), ("sharded", "40KB")]:
    folder = os.path.join(work, f"hf-{label}")
    model.save_pretrained(folder, safe_serialization=True, max_shard_size=shard_size)
    is_sharded = os.path.exists(os.path.join(folder, "model.safetensors.index.json"))
    if is_sharded != (label == "sharded"):
        failures.append(f"{label}: transformers wrote sharded={is_sharded}")
    out = os.path.join(work, f"ekv-{label}")
    run(os.path.join(bin_dir, "ekv-convert"), "--model", folder, "-o", out, "--quiet")
    converted = load_file(os.path.join(out, "model.safetensors"))
    for name, value in expected.items():
        if name not in converted or not torch.equal(converted[name], value):
            failures.append(f"{label}: {name} differs after ekv-convert")
    written_config = json.load(open(os.path.join(out, "config.json")))
    for key in ["num_key_value_heads", "rope_theta", "tie_word_embeddings", "hidden_size"]:
        if written_config[key] != getattr(config, key):
            failures.append(f"{label}: config {key} {written_config[key]} != {getattr(config, key)}")
    lines.append(f"transformers {label} bf16 checkpoint: {len(expected)} tensors identical after ekv-convert")

shutil.rmtree(work)
report(lines, failures)
