#!/usr/bin/env python3
"""Perplexity of an engine file in the engine itself, beside ekv-check's on the export it came from.

A GGUF (`ekv-export --format gguf`) runs in llama.cpp (llama-cpp-python), a DeepseekV3 folder
(`--format hf-deepseek`) in transformers without remote code; both are scored on the same
non-overlapping windows of ekv's tokens of TEXT as `ekv-check ppl --window W --max-windows N`
scores the export, so the two perplexities must agree to float rounding (docs/results.md,
"Engine layouts"). Run it with the engine venv (scripts/setup.sh --engines):

  .venv-engines/bin/python bench/engine-ppl.py --engine out/model-uptrained.gguf \\
      --export out/model-uptrained --text ~/.cache/ekv/corpora/eval.txt [--windows 16] [--window 512]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log_softmax_nll(logits, targets):
    logits = logits - logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -float(logp[np.arange(len(targets)), targets].sum())


def engine_scorer(engine, window):
    """A function from one window of token ids to its next-token logits, in the engine."""
    if engine.endswith(".gguf"):
        from llama_cpp import GGML_TYPE_F32, Llama
        llm = Llama(model_path=engine, n_ctx=window, n_batch=window, n_threads=os.cpu_count() or 1,
                    logits_all=True, type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)

        def score(ids):
            llm.reset()
            llm.eval(ids.tolist())
            return np.array(llm.scores[:len(ids)], dtype=np.float64)
        return "llama.cpp", score
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(engine, dtype=torch.float32).eval()

    def score(ids):
        with torch.no_grad():
            return model(torch.tensor(ids[None], dtype=torch.long)).logits[0].double().numpy()
    return "transformers", score


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", required=True, help="a .gguf file or a DeepseekV3 folder")
    parser.add_argument("--export", required=True, help="the ekv export it was written from")
    parser.add_argument("--text", required=True, help="held-out text (the evaluation corpus)")
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--window", type=int, default=512)
    args = parser.parse_args()
    build = os.environ.get("EKV_BUILD_DIR", os.path.join(ROOT, "build"))
    for name in (args.engine, args.export, args.text):
        if not os.path.exists(name):
            sys.exit(f"engine-ppl: {name} does not exist")

    ekv = subprocess.run([os.path.join(build, "apps", "ekv-check"), "ppl", "--model", args.export, "--text", args.text,
                          "--window", str(args.window), "--max-windows", str(args.windows), "--quiet"],
                         capture_output=True, text=True, check=True)
    ekv_ppl = float(re.search(r"final: ppl=([0-9.]+)", ekv.stdout).group(1))

    from safetensors.numpy import load_file
    with tempfile.TemporaryDirectory() as tmp:
        tokens = os.path.join(tmp, "tokens.safetensors")
        subprocess.run([os.path.join(build, "tests", "ekv_test_io"), "tokenize", args.export, args.text, tokens],
                       check=True, capture_output=True)
        ids = load_file(tokens)["tokens"].reshape(-1).astype(np.int64)
    name, score = engine_scorer(args.engine, args.window)
    nll, count, start = 0.0, 0, time.time()
    for w in range(args.windows):
        chunk = ids[w * args.window:(w + 1) * args.window]
        if len(chunk) < args.window:
            break
        nll += log_softmax_nll(score(chunk)[:-1], chunk[1:])
        count += len(chunk) - 1
        print(f"\r{name}: window {w + 1}/{args.windows}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    engine_ppl = float(np.exp(nll / count))
    print(f"final: engine={name} ppl_engine={engine_ppl:.4f} ppl_ekv={ekv_ppl:.4f} "
          f"relative_gap={abs(engine_ppl - ekv_ppl) / ekv_ppl:.2e} tokens={count} seconds={time.time() - start:.1f}")


if __name__ == "__main__":
    main()
