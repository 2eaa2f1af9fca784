"""ekv's forward pass and perplexity vs transformers' LlamaForCausalLM (eager attention, fp32)
on the same dequantized weights (the HF folder ekv-convert writes from the default GGUF).

- logits on 4 windows x 256 tokens of the evaluation corpus:
  max |dlogit| / max |logit| <= 1e-4 and argmax agreement >= 99.9 %;
- the GGUF layout and the HF layout of the same model give identical logits in ekv;
- perplexity (ekv-check ppl) within 0.1 % of the same protocol computed with transformers."""
import os
import re
import shutil

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer, LlamaForCausalLM

from peer_common import env_path, report, run, workdir

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
result = run(os.path.join(bin_dir, "ekv-check"), "ppl", "--model", model, "--text", corpus, "--window", window,
             "--max-windows", count, "--quiet")
match = re.search(r"final: ppl=([0-9.]+) nll=([0-9.]+) tokens=(\d+) windows=(\d+)", result.stdout)
if not match:
    failures.append(f"no final line in ekv-check output: {result.stdout!r}")
else:
    ekv_ppl, scored = float(match.group(1)), int(match.group(3))
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in range(count):
            chunk = torch.tensor([ids[w * window:(w + 1) * window]])
            logp = torch.log_softmax(reference(chunk).logits[0, :-1].double(), dim=-1)
            nll -= float(logp.gather(1, chunk[0, 1:, None]).sum())
            n += window - 1
    hf_ppl = float(np.exp(nll / n))
    gap = abs(ekv_ppl - hf_ppl) / hf_ppl
    lines.append(f"perplexity {count}x{window}: ekv {ekv_ppl:.4f}, transformers {hf_ppl:.4f}, "
                 f"relative gap {100 * gap:.4f} % (bound 0.1 %), tokens {scored} vs {n}")
    if scored != n:
        failures.append(f"scored tokens {scored} != {n}")
    if not gap <= 1e-3:
        failures.append(f"perplexity gap {gap:.2e} > 1e-3")

shutil.rmtree(work)
report(lines, failures)
