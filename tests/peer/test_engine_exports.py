"""ekv's engine exports in the stock engines themselves (run with .venv-engines: llama-cpp-python
0.3.36, built from its source distribution, and transformers 5.23 on PyPI's torch).

The default model through a small chain (8 x 256 calibration tokens) at 25 % cache, twice:
ekv-select-rope --layout llama.cpp (its slots one progression) and --layout transformers (a
multiset of chunks, held with longrope factors); ekv-jlrd with one latent rank; ekv-export to
the EliteKV folder, then --format gguf (f32) and hf-deepseek (f32) from that folder. Asserts, on
held-out text (the evaluation corpus):
- llama.cpp loads the GGUF as deepseek2 with MLA: its logits over 2 x 128 tokens (prefill) and
  over 16 tokens decoded one at a time from its own cache equal ekv's compressed forward of the
  EliteKV folder, max |dlogit| / max |logit| <= 1e-5 (f32 weights, f32 cache); its KV cache is
  kv_lora_rank + n_rot elements per token and layer (its log line: V cache 0 bytes); its
  perplexity over 4 x 512 tokens equals ekv-check's within 0.1 %;
- transformers loads both folders with AutoModelForCausalLM and no remote code, as
  DeepseekV3ForCausalLM: logits equal ekv's (<= 1e-5), decoding from its cache equals its full
  forward, the cache holds only the latent and the rotary key, and save_pretrained + reload
  gives the same logits;
- the GGUF of the transformers layout (a chunk shared by two KV heads in some layer) is refused,
  naming the layer, while hf-deepseek writes it;
- the second family (Qwen2.5-Coder-0.5B: q/k/v biases) through the same chain: transformers'
  DeepseekV3 gives ekv's logits (<= 1e-5) with the biases carried exactly (the query bias
  through the low-rank query path), and the GGUF is refused (deepseek2 has no biases);
- ekv's own EliteKV folder (trust_remote_code) runs on this transformers as on the peer venv's
  4.46: its logits equal ekv's (<= 1e-5) and decoding from its compressed cache equals its full
  forward (<= 1e-4)."""
import contextlib
import json
import os
import re
import subprocess
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from peer_common import decode_from_cache, env_path, report, run, workdir

model = env_path("EKV_DEFAULT_MODEL")
second = env_path("EKV_SECOND_MODEL")
corpus = env_path("EKV_EVAL_TEXT")  # held out: compared on, never calibrated on
calib_text = env_path("EKV_CALIB_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("engines")
lines, failures = [], []
torch.set_num_threads(os.cpu_count() or 1)
BOUND = 1e-5


def path(name):
    return os.path.join(work, name)


def ekv(name, *args):
    return run(os.path.join(bin_dir, f"ekv-{name}"), *args, "--quiet")


def relative(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def check(label, value, bound):
    lines.append(f"{label}: {value:.3e} (bound {bound:g})")
    if not value <= bound:
        failures.append(f"{label}: {value:.3e} > {bound:g}")


ekv("calibrate", "--model", model, "--text", calib_text, "-S", 256, "-N", 8, "--keep-seqs", 8, "-o", path("calib.h5"))
for layout in ("llama.cpp", "transformers"):
    tag = layout.replace(".", "")
    ekv("select-rope", "--model", model, "--calib", path("calib.h5"), "--r-max", 6, "--layout", layout,
        "-o", path(f"rope-{tag}.h5"))
    ekv("jlrd", "--model", model, "--rope", path(f"rope-{tag}.h5"), "--calib", path("calib.h5"), "--r", 6,
        "--svd", "whitened", "--cache-ratio", 0.25, "-o", path(f"jlrd-{tag}.h5"))
    ekv("export", "--model", model, "--rope", path(f"rope-{tag}.h5"), "--jlrd", path(f"jlrd-{tag}.h5"),
        "--pack-positions", 512, "-o", path(f"elitekv-{tag}"))
    ekv("export", "--model", model, "--compressed", path(f"elitekv-{tag}"), "--format", "hf-deepseek",
        "-o", path(f"deepseek-{tag}"))
summary = ekv("export", "--model", model, "--compressed", path("elitekv-llamacpp"), "--format", "gguf",
              "-o", path("model.gguf")).stdout
lines.append("gguf export: " + summary.strip().splitlines()[-1])
refused = subprocess.run(
    [os.path.join(bin_dir, "ekv-export"), "--model", model, "--compressed", path("elitekv-transformers"),
     "--format", "gguf", "-o", path("refused.gguf"), "--quiet"], capture_output=True, text=True)
shared = re.search(r"layer \d+: KV heads \d+ and \d+ both rotate chunk \d+", refused.stderr)
lines.append(f"transformers layout as GGUF: exit {refused.returncode}, "
             f"{shared.group(0) if shared else refused.stderr.strip()[-200:]}")
if refused.returncode == 0 or not shared or os.path.exists(path("refused.gguf")):
    failures.append("the GGUF of a selection with a shared chunk was not refused naming the layer")

# Held-out tokens (ekv's tokenizer; the engines get ids, so only the models are compared).
run(tool, "tokenize", model, corpus, path("tokens.safetensors"))
ids = load_file(path("tokens.safetensors"))["tokens"].reshape(-1)
windows, length = 2, 128
start = len(ids) // 2
batch = ids[start:start + windows * length].astype(np.int32).reshape(windows, length)
save_file({"tokens": batch}, path("batch.safetensors"))
ours = {}
for tag in ("llamacpp", "transformers"):
    run(tool, "logits", path(f"elitekv-{tag}"), path("batch.safetensors"), path(f"logits-{tag}.safetensors"))
    ours[tag] = load_file(path(f"logits-{tag}.safetensors"))["logits"].reshape(windows, length, -1)

# llama.cpp ----------------------------------------------------------------------------------
from llama_cpp import GGML_TYPE_F32, Llama  # noqa: E402


@contextlib.contextmanager
def captured_stderr():
    """llama.cpp logs to the process's stderr (fd 2); the KV cache size is in that log."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield sink
        finally:
            os.dup2(saved, 2)
            os.close(saved)


n_ctx = 512
with captured_stderr() as log:
    llm = Llama(model_path=path("model.gguf"), n_ctx=n_ctx, n_batch=n_ctx, n_threads=os.cpu_count() or 1,
                logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, flash_attn=False, verbose=True)
    log.seek(0)
    llama_log = log.read()
arch = re.search(r"arch\s*=\s*(\S+)", llama_log)
cache = re.search(r"llama_kv_cache: size =\s*([0-9.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers.*?K \(f32\):\s*([0-9.]+) MiB,"
                  r"\s*V \(f32\):\s*([0-9.]+) MiB", llama_log)
gguf_config = json.load(open(os.path.join(path("deepseek-llamacpp"), "config.json")))
per_token = gguf_config["kv_lora_rank"] + gguf_config["qk_rope_head_dim"]
layers = gguf_config["num_hidden_layers"]
lines.append(f"llama.cpp: arch {arch.group(1) if arch else '?'}; KV cache line: "
             f"{cache.group(0) if cache else 'not found'}")
if not arch or arch.group(1) != "deepseek2":
    failures.append("llama.cpp did not load the GGUF as deepseek2")
if not cache:
    failures.append("no KV cache size in llama.cpp's log")
else:
    k_mib, v_mib = float(cache.group(4)), float(cache.group(5))
    expected = n_ctx * layers * per_token * 4 / 2**20
    lines.append(f"llama.cpp KV cache: K {k_mib:.2f} MiB, V {v_mib:.2f} MiB; ours: {n_ctx} x {layers} layers x "
                 f"({gguf_config['kv_lora_rank']} + {gguf_config['qk_rope_head_dim']}) x 4 B = {expected:.2f} MiB")
    if abs(k_mib - expected) > 0.01 or v_mib != 0.0:
        failures.append(f"llama.cpp caches {k_mib} + {v_mib} MiB, not the latent and rotary key ({expected:.2f})")

worst = 0.0
for w in range(windows):
    llm.reset()
    llm.eval(batch[w].tolist())
    worst = max(worst, relative(np.array(llm.scores[:length], dtype=np.float64), ours["llamacpp"][w]))
check(f"llama.cpp vs ekv, prefill logits {windows}x{length}", worst, BOUND)
prompt, steps = 96, 16
llm.reset()
llm.eval(batch[0, :prompt].tolist())
for k in range(steps):
    llm.eval([int(batch[0, prompt + k])])
decoded = np.array(llm.scores[prompt:prompt + steps], dtype=np.float64)
check(f"llama.cpp decoding {steps} tokens from its cache vs ekv", relative(decoded, ours["llamacpp"][0, prompt:prompt + steps]),
      BOUND)

ppl_windows, ppl_length = 4, 512
result = ekv("check", "ppl", "--model", path("elitekv-llamacpp"), "--text", corpus, "--window", ppl_length,
             "--max-windows", ppl_windows)
ekv_ppl = float(re.search(r"final: ppl=([0-9.]+)", result.stdout).group(1))
nll, count = 0.0, 0
for w in range(ppl_windows):
    chunk = ids[w * ppl_length:(w + 1) * ppl_length].tolist()
    llm.reset()
    llm.eval(chunk)
    logits = np.array(llm.scores[:ppl_length - 1], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll -= float(logp[np.arange(ppl_length - 1), chunk[1:]].sum())
    count += ppl_length - 1
llama_ppl = float(np.exp(nll / count))
check(f"perplexity {ppl_windows}x{ppl_length}: ekv-check {ekv_ppl:.4f}, llama.cpp {llama_ppl:.4f}, relative gap",
      abs(ekv_ppl - llama_ppl) / ekv_ppl, 1e-3)
del llm

# transformers -------------------------------------------------------------------------------
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

lines.append(f"transformers {transformers.__version__}, torch {torch.__version__}")
for tag in ("llamacpp", "transformers"):
    folder = path(f"deepseek-{tag}")
    config = json.load(open(os.path.join(folder, "config.json")))
    theirs_model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    lines.append(f"{tag} layout: transformers loaded {type(theirs_model).__name__} without remote code, rope "
                 f"{(config.get('rope_scaling') or {}).get('rope_type', 'default')}, "
                 f"{config['qk_rope_head_dim'] // 2} slots, kv_lora_rank {config['kv_lora_rank']}")
    if type(theirs_model).__name__ != "DeepseekV3ForCausalLM":
        failures.append(f"{tag}: loaded as {type(theirs_model).__name__}")
    input_ids = torch.from_numpy(batch.astype(np.int64))
    with torch.no_grad():
        theirs = theirs_model(input_ids).logits.double().numpy()
    check(f"{tag} layout: transformers vs ekv, logits {windows}x{length}", relative(theirs, ours[tag]), BOUND)
    decoded, cache = decode_from_cache(theirs_model, input_ids, prompt, steps)
    decoded = decoded.double().numpy()
    check(f"{tag} layout: transformers decoding {steps} tokens from its cache vs its full forward",
          relative(decoded, theirs[0, prompt - 1:prompt + steps - 1]), 1e-4)
    total = prompt + steps - 1
    shapes = [(tuple(layer.keys.shape), tuple(layer.values.shape)) for layer in cache.layers]
    want = ((1, 1, total, config["kv_lora_rank"]), (1, 1, total, config["qk_rope_head_dim"]))
    lines.append(f"{tag} layout: transformers cache per layer {shapes[0]} (latent, rotary key)")
    if any(s != want for s in shapes):
        failures.append(f"{tag}: transformers caches {shapes[0]}, not {want}")
    saved = path(f"saved-{tag}")
    theirs_model.save_pretrained(saved)
    reloaded = AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32).eval()
    with torch.no_grad():
        again = reloaded(input_ids).logits.double().numpy()
    check(f"{tag} layout: after save_pretrained and a reload", relative(again, theirs), 1e-7)

# ekv's own folder (trust_remote_code: modeling_elitekv.py) on this transformers too: the same
# logits as ekv's forward, and decoding from its compressed cache equal to its full forward.
elitekv_model = AutoModelForCausalLM.from_pretrained(path("elitekv-llamacpp"), trust_remote_code=True,
                                                     dtype=torch.float32).eval()
input_ids = torch.from_numpy(batch.astype(np.int64))
with torch.no_grad():
    remote = elitekv_model(input_ids).logits.double().numpy()
check(f"EliteKV folder (remote code) in transformers {transformers.__version__} vs ekv, logits {windows}x{length}",
      relative(remote, ours["llamacpp"]), BOUND)
decoded, _ = decode_from_cache(elitekv_model, input_ids, prompt, steps)
check(f"EliteKV folder (remote code): decoding {steps} tokens from its cache vs its full forward",
      relative(decoded.double().numpy(), remote[0, prompt - 1:prompt + steps - 1]), 1e-4)

# The second family: biases -------------------------------------------------------------------
ekv("calibrate", "--model", second, "--text", calib_text, "-S", 256, "-N", 4, "--keep-seqs", 4, "-o", path("qwen-calib.h5"))
ekv("select-rope", "--model", second, "--calib", path("qwen-calib.h5"), "--r-max", 6, "--layout", "transformers",
    "-o", path("qwen-rope.h5"))
ekv("jlrd", "--model", second, "--rope", path("qwen-rope.h5"), "--calib", path("qwen-calib.h5"), "--r", 6,
    "--svd", "whitened", "--cache-ratio", 0.25, "-o", path("qwen-jlrd.h5"))
ekv("export", "--model", second, "--rope", path("qwen-rope.h5"), "--jlrd", path("qwen-jlrd.h5"), "--pack-positions", 512,
    "-o", path("qwen-elitekv"))
ekv("export", "--model", second, "--compressed", path("qwen-elitekv"), "--format", "hf-deepseek", "-o", path("qwen-deepseek"))
refused = subprocess.run(
    [os.path.join(bin_dir, "ekv-export"), "--model", second, "--compressed", path("qwen-elitekv"), "--format", "gguf",
     "-o", path("qwen.gguf"), "--quiet"], capture_output=True, text=True)
lines.append(f"qwen2 as GGUF: exit {refused.returncode}: {refused.stderr.strip().splitlines()[-1][:160] if refused.stderr else ''}")
if refused.returncode == 0 or "biases" not in refused.stderr:
    failures.append("the GGUF of a model with biases was not refused")
run(tool, "tokenize", second, corpus, path("qwen-tokens.safetensors"))
qwen_ids = load_file(path("qwen-tokens.safetensors"))["tokens"].reshape(-1)
qwen_batch = qwen_ids[start:start + windows * length].astype(np.int32).reshape(windows, length)
save_file({"tokens": qwen_batch}, path("qwen-batch.safetensors"))
run(tool, "logits", path("qwen-elitekv"), path("qwen-batch.safetensors"), path("qwen-logits.safetensors"))
qwen_ours = load_file(path("qwen-logits.safetensors"))["logits"].reshape(windows, length, -1)
config = json.load(open(os.path.join(path("qwen-deepseek"), "config.json")))
qwen_model = AutoModelForCausalLM.from_pretrained(path("qwen-deepseek"), dtype=torch.float32).eval()
lines.append(f"qwen2: transformers loaded {type(qwen_model).__name__}, attention_bias {config['attention_bias']}, "
             f"q_lora_rank {config['q_lora_rank']} (the query bias's path)")
with torch.no_grad():
    qwen_theirs = qwen_model(torch.from_numpy(qwen_batch.astype(np.int64))).logits.double().numpy()
check("qwen2: transformers vs ekv, logits 2x128", relative(qwen_theirs, qwen_ours), BOUND)

report(lines, failures)
