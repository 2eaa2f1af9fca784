"""ekv's forward pass and perplexity vs transformers' LlamaForCausalLM (eager attention, fp32)
on the same dequantized weights (the HF folder ekv-convert writes from the default GGUF).

- logits on 4 windows x 256 tokens of the evaluation corpus:
  max |dlogit| / max |logit| <= 1e-4 and argmax agreement >= 99.9 %;
- the GGUF layout and the HF layout of the same model give identical logits in ekv;
- perplexity (ekv-check ppl) within 0.1 % of the same protocol computed with transformers."""
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

from peer_common import env_path, perplexity_vs_transformers, report, run, workdir

model = env_path("EKV_DEFAULT_MODEL")
corpus = env_path("EKV_EVAL_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("forward")
lines, failures = [], []
torch.set_num_threads(os.cpu_count() or 1)

hf_folder = os.path.join(work, "hf")
run(os.path.join(bin_dir, "ekv-convert"), "--model", model, "-o", hf_folder, "--quiet")
reference = LlamaForCausalLM.from_pretrained(hf_folder, torch_dtype=torch.float32, attn_implementation="eager").eval()
tokenizer = AutoTokenizer.from_pretrained(hf_folder)
ids = tokenizer(open(corpus, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]

# Logits: 4 windows of 256 tokens from the middle of the corpus.
windows, length = 4, 256
start = len(ids) // 3
batch = np.array(ids[start:start + windows * length], dtype=np.int32).reshape(windows, length)
tokens_path = os.path.join(work, "tokens.safetensors")
save_file({"tokens": batch}, tokens_path)
ours = {}
for label, source in [("gguf", model), ("hf", hf_folder)]:
    out = os.path.join(work, f"logits-{label}.safetensors")
    run(tool, "logits", source, tokens_path, out)
    ours[label] = load_file(out)["logits"]
with torch.no_grad():
    theirs = reference(torch.from_numpy(batch.astype(np.int64))).logits.reshape(windows * length, -1).numpy()
relative = float(np.max(np.abs(ours["gguf"] - theirs)) / np.max(np.abs(theirs)))
agreement = float(np.mean(np.argmax(ours["gguf"], axis=1) == np.argmax(theirs, axis=1)))
lines.append(f"logits {windows}x{length}: max|dlogit|/max|logit| = {relative:.3e} (bound 1e-4)")
lines.append(f"argmax agreement = {100 * agreement:.3f} % (bound 99.9 %)")
if not relative <= 1e-4:
    failures.append(f"logit error {relative:.3e} > 1e-4")
if not agreement >= 0.999:
    failures.append(f"argmax agreement {agreement:.5f} < 0.999")
layout_diff = float(np.max(np.abs(ours["gguf"] - ours["hf"])))
lines.append(f"GGUF layout vs HF layout logits in ekv: max abs diff {layout_diff:g}")
if layout_diff != 0.0:
    failures.append(f"GGUF and HF layouts differ by {layout_diff:g}")

# Perplexity: the docs/method.md §7 protocol on the first windows of the corpus, both implementations.
window, count = 512, 8
perplexity_vs_transformers(bin_dir, model, corpus, reference, ids, window, count, lines, failures)

shutil.rmtree(work)
report(lines, failures)
