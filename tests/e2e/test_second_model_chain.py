"""The whole chain on the second family, Qwen2.5-Coder-0.5B-Instruct (qwen2, biases), at a small
scale that fits CI: ekv-calibrate (8 x 128 tokens of the calibration corpus) -> ekv-select-rope ->
ekv-jlrd (the preset's method at 25 %) -> ekv-export -> ekv-check decode and compare on the
held-out evaluation corpus. Asserts:
- every step exits 0 and the decode paths (absorbed, reconstruct, decode pack) agree;
- the compressed model is a language model, not noise: perplexity within 10x the original's and
  top-1 agreement with it above 20 % (measured: 4.1x and 31.5 % from this small calibration;
  a lost bias or a wrong layout gives ppl in the thousands and top-1 of a few %);
- transformers, loading the export with its own modeling code (trust_remote_code), gives the
  logits ekv computes from the compressed cache (max |dlogit| / max |logit| <= 1e-4).
The full pipeline on this model is the preset configs/qwen2.5-coder-0.5b-25.toml, not a CI step."""
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "peer"))
from peer_common import env_path, report, run, workdir  # noqa: E402

model = env_path("EKV_SECOND_MODEL")
calib = env_path("EKV_CALIB_TEXT")
corpus = env_path("EKV_EVAL_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
preset = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "qwen2.5-coder-0.5b-25.toml")
work = workdir("second-chain")
lines, failures = [], []
torch.set_num_threads(os.cpu_count() or 1)


def ekv(name, *args):
    return run(os.path.join(bin_dir, f"ekv-{name}"), *args, "--quiet").stdout


calib_h5, rope_h5, jlrd_h5, export = (os.path.join(work, n) for n in ("calib.h5", "rope.h5", "jlrd.h5", "export"))
ekv("calibrate", "--config", preset, "--model", model, "--text", calib, "--seq-len", 128, "--num-seqs", 8,
    "--keep-seqs", 8, "-o", calib_h5)
ekv("select-rope", "--config", preset, "--model", model, "--calib", calib_h5, "-o", rope_h5)
ekv("jlrd", "--config", preset, "--model", model, "--rope", rope_h5, "--calib", calib_h5, "-o", jlrd_h5)
ekv("export", "--model", model, "--rope", rope_h5, "--jlrd", jlrd_h5, "--pack-positions", 256, "-o", export)
config = json.load(open(os.path.join(export, "config.json")))
lines.append(f"export: r={config['elitekv_r']}, mean d_kv={np.mean(config['elitekv_kv_rank']):.1f}, "
             f"attention_bias={config['attention_bias']}")
if not config.get("attention_bias"):
    failures.append("the export of a qwen2 model does not say attention_bias")

decode = ekv("check", "decode", "--compressed", export, "--model", model, "--text", corpus, "--prompt", 32, "--steps", 16)
final = [line for line in decode.splitlines() if line.startswith("final:")]
lines.append(final[-1] if final else "no final line from ekv-check decode")
if not final or " agree" not in final[-1]:
    failures.append(f"decode paths disagree: {decode[-500:]}")

fidelity_json = os.path.join(work, "fidelity.json")
ekv("check", "compare", "--model", model, "--compressed", export, "--text", corpus, "--max-windows", 4,
    "-o", fidelity_json)
fidelity = json.load(open(fidelity_json))
ppl_o, ppl_c, top1 = fidelity["ppl_original"], fidelity["ppl_compressed"], fidelity["top1_agreement"]
lines.append(f"fidelity, 4 windows: ppl {ppl_o:.2f} -> {ppl_c:.2f}, KL {fidelity['mean_kl']:.3f}, "
             f"top-1 {100 * top1:.1f} %, cache ratio {fidelity['cache_ratio']:.4f}")
if not ppl_c <= 10 * ppl_o:
    failures.append(f"compressed ppl {ppl_c:.2f} is more than 10x the original's {ppl_o:.2f}")
if not top1 > 0.2:
    failures.append(f"top-1 agreement {top1:.3f} <= 0.2")

# transformers with the export's own modeling code vs ekv on the same export.
ids = np.arange(2000, 2000 + 2 * 128, dtype=np.int32).reshape(2, 128)  # any in-vocabulary tokens
ids = (ids * 7919) % config["vocab_size"]
tokens_path, logits_path = os.path.join(work, "tokens.safetensors"), os.path.join(work, "logits.safetensors")
save_file({"tokens": ids.astype(np.int32)}, tokens_path)
run(tool, "logits", export, tokens_path, logits_path)
mine = load_file(logits_path)["logits"]
reference = AutoModelForCausalLM.from_pretrained(export, trust_remote_code=True, torch_dtype=torch.float32).eval()
with torch.no_grad():
    theirs = reference(torch.from_numpy(ids.astype(np.int64))).logits.reshape(mine.shape).numpy()
relative = float(np.max(np.abs(mine - theirs)) / np.max(np.abs(theirs)))
lines.append(f"export in transformers vs ekv: max|dlogit|/max|logit| = {relative:.3e} (bound 1e-4)")
if not relative <= 1e-4:
    failures.append(f"transformers and ekv disagree on the export: {relative:.3e}")

shutil.rmtree(work)
report(lines, failures)
