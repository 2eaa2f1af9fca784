"""The default model through two peers we did not write.

1. Every tensor dequantized by ekv (GGUF layout) equals the `gguf` package's dequantize().
2. ekv-convert's HF folder (dequantized + Q/K rows unpermuted) equals the state dict that
   transformers builds from the same GGUF file with its own loader.
The maximum absolute difference per tensor type is printed; the bound is 0 (bit-exact)."""
import os
import shutil
from collections import defaultdict

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import load_file

from peer_common import env_path, report, run, workdir

model = env_path("EKV_DEFAULT_MODEL")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("dequant")
lines, failures = [], []

# 1. raw dequantization, every tensor
ours_raw = os.path.join(work, "raw.safetensors")
run(tool, "dequant-gguf", model, ours_raw)
ours = load_file(ours_raw)
reader = GGUFReader(model)
worst = defaultdict(float)
for tensor in reader.tensors:
    ref = dequantize(tensor.data, tensor.tensor_type).reshape([int(d) for d in reversed(tensor.shape)])
    mine = ours[tensor.name]
    if mine.shape != ref.shape:
        failures.append(f"{tensor.name}: shape {mine.shape} vs gguf {ref.shape}")
        continue
    diff = float(np.max(np.abs(mine.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    worst[tensor.tensor_type.name] = max(worst[tensor.tensor_type.name], diff)
    if diff != 0.0:
        failures.append(f"{tensor.name} ({tensor.tensor_type.name}): max |ekv - gguf| = {diff:g}")
for type_name, diff in sorted(worst.items()):
    lines.append(f"dequant vs gguf {type_name}: max abs diff {diff:g}")
lines.append(f"dequant vs gguf: {len(reader.tensors)} tensors compared")

# 2. HF layout vs transformers' own GGUF loader
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

hf_dir = os.path.join(work, "hf")
run(os.path.join(bin_dir, "ekv-convert"), "--model", model, "-o", hf_dir, "--quiet")
converted = load_file(os.path.join(hf_dir, "model.safetensors"))
reference = AutoModelForCausalLM.from_pretrained(
    os.path.dirname(model), gguf_file=os.path.basename(model), torch_dtype=torch.float32
).state_dict()
layout_worst = 0.0
for name, mine in converted.items():
    if name not in reference:
        failures.append(f"{name}: not in transformers' state dict")
        continue
    diff = float(np.max(np.abs(mine - reference[name].numpy())))
    layout_worst = max(layout_worst, diff)
    if diff != 0.0:
        failures.append(f"{name}: max |ekv-convert - transformers| = {diff:g}")
missing = [n for n in reference if n not in converted and n != "lm_head.weight"]
if missing:
    failures.append(f"tensors transformers has but ekv-convert lacks: {missing[:5]}")
lines.append(f"HF layout vs transformers GGUF loader: {len(converted)} tensors, max abs diff {layout_worst:g}")

shutil.rmtree(work)
report(lines, failures)
