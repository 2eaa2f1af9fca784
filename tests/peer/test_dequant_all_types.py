"""Every GGML type ekv supports (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K,
Q3_K, Q4_K, Q5_K, Q6_K), in a GGUF file written by the `gguf` package's writer, dequantizes in
ekv exactly as in `gguf`.

Types that gguf can quantize are made from random floats; for the others (no quantizer in
gguf) the blocks are random bytes with sane f16 scales, which are valid blocks: every bit
pattern of the quant bytes is a legal block, so random bytes reach every code path."""
import os
import shutil

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file

from peer_common import env_path, report, run, workdir

tool = env_path("EKV_TEST_IO")
work = workdir("alltypes")
rng = np.random.default_rng(1234)
rows, cols = 6, 512
path = os.path.join(work, "types.gguf")

writer = GGUFWriter(path, "llama")
made = {}
for qtype in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]:
    values = rng.standard_normal((rows, cols)).astype(np.float32)
    if qtype == T.F32:
        writer.add_tensor(f"t.{qtype.name}", values)
    elif qtype == T.F16:
        writer.add_tensor(f"t.{qtype.name}", values.astype(np.float16))
    else:
        writer.add_tensor(f"t.{qtype.name}", quantize(values, qtype), raw_dtype=qtype)
    made[qtype.name] = True
# Byte offsets of each block's f16 scales (d, and dmin where the type has one).
for qtype, scale_offsets in [(T.IQ4_NL, [0]), (T.Q2_K, [80, 82]), (T.Q3_K, [108]), (T.Q4_K, [0, 2]),
                             (T.Q5_K, [0, 2]), (T.Q6_K, [208])]:
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(rows * cols // block_elems, block_bytes), dtype=np.uint8)
    for offset in scale_offsets:
        scales = rng.uniform(0.01, 0.5, size=blocks.shape[0]).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    writer.add_tensor(f"t.{qtype.name}", blocks.reshape(rows, -1), raw_dtype=qtype)
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

ours_path = os.path.join(work, "ours.safetensors")
run(tool, "dequant-gguf", path, ours_path)
ours = load_file(ours_path)
lines, failures = [], []
for tensor in GGUFReader(path).tensors:
    ref = dequantize(tensor.data, tensor.tensor_type).reshape(rows, cols).astype(np.float64)
    mine = ours[tensor.name].astype(np.float64)
    diff = float(np.max(np.abs(mine - ref)))
    scale = float(np.max(np.abs(ref)))
    lines.append(f"{tensor.tensor_type.name}: max abs diff {diff:g} (max |value| {scale:g})")
    if diff != 0.0:
        failures.append(f"{tensor.name}: ekv differs from gguf by {diff:g}")
if len(lines) != 14:
    failures.append(f"expected 14 tensor types, compared {len(lines)}")
shutil.rmtree(work)
report(lines, failures)
