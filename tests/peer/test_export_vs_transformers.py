"""The ekv-export checkpoint in transformers (trust_remote_code) vs ekv's compressed forward.

The chain calibrate -> select-rope -> jlrd -> export runs on the default model at 25 % cache
(small calibration: the test is about the export, not the quality). Then, in fp32:
- logits of transformers' EliteKVForCausalLM on 2 x 128 held-out tokens = ekv's compressed
  forward (the same folder read by ekv): max |dlogit| / max |logit| <= 1e-4, argmax >= 99.9 %;
- decoding in Python from its own cache (prompt, then one token per step) = its full forward,
  and the cache holds only k_e [B, G, T, 2r] and the latent [B, 1, T, d_kv];
- generate() (greedy) returns the tokens of the same greedy loop;
- ekv-check decode (absorbed, reconstruct and decode-pack paths from ekv's compressed cache)
  agrees with ekv's compressed prefill on the real model."""
import json
import os

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

from peer_common import decode_from_cache, env_path, report, run, workdir

model = env_path("EKV_DEFAULT_MODEL")
corpus = env_path("EKV_EVAL_TEXT")  # held out: only compared on, never calibrated on
calib_text = env_path("EKV_CALIB_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("export")
lines, failures = [], []
torch.set_num_threads(os.cpu_count() or 1)


def tool_path(name):
    return os.path.join(bin_dir, name)


def path(name):
    return os.path.join(work, name)


run(tool_path("ekv-calibrate"), "--model", model, "--text", calib_text, "-S", "128", "-N", "4", "--keep-seqs", "4",
    "-o", path("calib.h5"), "--quiet")
run(tool_path("ekv-select-rope"), "--model", model, "--calib", path("calib.h5"), "--r-max", "4", "-o",
    path("rope.h5"), "--quiet")
# The pipeline's options (chunk maps, attention-aware weights, W_o refit) at a small scale.
run(tool_path("ekv-jlrd"), "--model", model, "--rope", path("rope.h5"), "--calib", path("calib.h5"), "--r", "4",
    "--svd", "whitened", "--budget", "0.25", "--chunk-map", "auto", "--weighting", "attention", "--refit-output",
    "--refit-heldout", "1", "-o", path("jlrd.h5"), "--quiet")
export = path("export")
run(tool_path("ekv-export"), "--model", model, "--rope", path("rope.h5"), "--jlrd", path("jlrd.h5"), "-o", export,
    "--quiet")
config = json.load(open(os.path.join(export, "config.json")))
# ekv's own decoding from the compressed cache (absorbed, reconstruct, pack) vs its prefill;
# ekv-check decode exits non-zero beyond its tolerance (1e-4).
decoded = run(tool_path("ekv-check"), "decode", "--compressed", export, "--text", corpus, "--steps", "32", "--quiet")
lines.append("ekv decode paths agree with the prefill: " + decoded.stdout.strip().splitlines()[-1])
r, kv_heads, ranks = config["elitekv_r"], config["num_key_value_heads"], config["elitekv_kv_rank"]

theirs_model = AutoModelForCausalLM.from_pretrained(export, trust_remote_code=True, torch_dtype=torch.float32).eval()
lines.append(f"transformers loaded {type(theirs_model).__name__} (r={r}, d_kv {min(ranks)}..{max(ranks)})")

# Logits: ekv's compressed forward of the same folder vs transformers.
tokens_path = path("tokens.safetensors")
run(tool, "tokenize", model, corpus, tokens_path)
ids = load_file(tokens_path)["tokens"].reshape(-1)
windows, length = 2, 128
start = len(ids) // 2
batch = ids[start:start + windows * length].astype(np.int32).reshape(windows, length)
batch_path = path("batch.safetensors")
save_file({"tokens": batch}, batch_path)
run(tool, "logits", export, batch_path, path("logits.safetensors"))
ours = load_file(path("logits.safetensors"))["logits"]
input_ids = torch.from_numpy(batch.astype(np.int64))
with torch.no_grad():
    theirs = theirs_model(input_ids).logits
flat = theirs.reshape(windows * length, -1).numpy()
relative = float(np.max(np.abs(ours - flat)) / np.max(np.abs(flat)))
agreement = float(np.mean(np.argmax(ours, axis=1) == np.argmax(flat, axis=1)))
lines.append(f"logits {windows}x{length}: max|dlogit|/max|logit| = {relative:.3e} (bound 1e-4)")
lines.append(f"argmax agreement = {100 * agreement:.3f} % (bound 99.9 %)")
if not relative <= 1e-4:
    failures.append(f"logit error {relative:.3e} > 1e-4")
if not agreement >= 0.999:
    failures.append(f"argmax agreement {agreement:.5f} < 0.999")

# Decoding from the module's own compressed cache: the prompt, then one token per step.
prompt, steps = 96, 32
decoded, cache = decode_from_cache(theirs_model, input_ids, prompt, steps)
full = theirs[0, prompt - 1:prompt + steps - 1]
decode_relative = float((decoded - full).abs().max() / full.abs().max())
lines.append(f"transformers decode vs its full forward, {steps} steps: {decode_relative:.3e} (bound 1e-4)")
if not decode_relative <= 1e-4:
    failures.append(f"decode differs from the full forward by {decode_relative:.3e}")
total = prompt + steps - 1
shapes_ok = all(tuple(cache.key_cache[l].shape) == (1, kv_heads, total, 2 * r) and
                tuple(cache.value_cache[l].shape) == (1, 1, total, ranks[l]) for l in range(len(ranks)))
lines.append(f"cache per layer = k_e [1, {kv_heads}, {total}, {2 * r}] + latent [1, 1, {total}, d_kv]: {shapes_ok}")
if not shapes_ok:
    failures.append("the cache holds something other than k_e and the latent: "
                    f"{tuple(cache.key_cache[0].shape)}, {tuple(cache.value_cache[0].shape)}")

# generate() (greedy) = a greedy loop over the same module. Debian's torch 1.13 cannot import
# torch.distributed.fsdp under Python 3.11 (a dataclass with a mutable default), which
# transformers 4.46's generate() probes; nothing here is distributed, so the probe says no.
import transformers.generation.utils as generation_utils
generation_utils.is_fsdp_managed_module = lambda module: False
new = 8
with torch.no_grad():
    generated = theirs_model.generate(input_ids[:1, :prompt], max_new_tokens=new, do_sample=False)[0, prompt:].tolist()
    sequence = input_ids[:1, :prompt]
    greedy = []
    for _ in range(new):
        token = int(theirs_model(sequence).logits[0, -1].argmax())
        greedy.append(token)
        sequence = torch.cat([sequence, torch.tensor([[token]])], dim=1)
lines.append(f"generate() greedy {new} tokens = full-forward greedy loop: {generated == greedy}")
if generated != greedy:
    failures.append(f"generate {generated} != greedy loop {greedy}")

report(lines, failures)
