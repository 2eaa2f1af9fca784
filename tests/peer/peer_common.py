"""Shared helpers of the peer tests: paths from the environment ctest sets, running our tools."""
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile


def env_path(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"FAIL: {name} is not set (run through ctest)")
    return value


def run(*command):
    """Runs one of our executables; a non-zero exit fails the test with its stderr."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, command))} exited {result.returncode}:\n{result.stderr}")
    return result


def workdir(name):
    """A scratch folder removed when the test exits (the export test's is 800 MB); set
    EKV_KEEP_PEER_WORK=1 to keep it for a look after a failure."""
    path = tempfile.mkdtemp(prefix=f"ekv-peer-{name}-")
    if os.environ.get("EKV_KEEP_PEER_WORK") != "1":
        atexit.register(shutil.rmtree, path, True)
    return path


def report(lines, failures):
    for line in lines:
        print(line)
    if failures:
        print("\n".join(f"FAIL: {f}" for f in failures))
        print(f"{len(lines)} checks, {len(failures)} failed")
        sys.exit(1)
    print(f"all {len(lines)} checks passed")


def compare_tokens(label, mine, theirs, lines, failures):
    """Token ids of ours against a peer's: one line when identical, else the first difference."""
    if mine == theirs:
        lines.append(f"{label}: {len(mine)} tokens, all identical")
        return
    first = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
    failures.append(f"{label}: {len(mine)} vs {len(theirs)} tokens, first difference at token {first}: "
                    f"{mine[first:first + 5]} vs {theirs[first:first + 5]}")


def perplexity_vs_transformers(bin_dir, model, corpus, reference, ids, window, count, lines, failures):
    """ekv-check ppl on the first `count` windows of `corpus` against the same protocol (docs/method.md
    §7) computed with the transformers model `reference` on `ids` (the corpus' tokens): within 0.1 %,
    the same number of scored tokens."""
    import numpy as np
    import torch
    result = run(os.path.join(bin_dir, "ekv-check"), "ppl", "--model", model, "--text", corpus, "--window", window,
                 "--max-windows", count, "--quiet")
    match = re.search(r"final: ppl=([0-9.]+) nll=([0-9.]+) tokens=(\d+) windows=(\d+)", result.stdout)
    if not match:
        failures.append(f"no final line in ekv-check output: {result.stdout!r}")
        return
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


def decode_from_cache(model, input_ids, prompt, steps):
    """A transformers model decoding from its own cache: the first `prompt` tokens of row 0 in one
    call, then one token per call. Returns the `steps` next-token logits ([steps, vocab]) and the
    cache, for comparing with the full forward's logits at positions prompt-1 ... prompt+steps-2."""
    import torch
    with torch.no_grad():
        out = model(input_ids[:1, :prompt], use_cache=True)
        cache, decoded = out.past_key_values, [out.logits[0, -1]]
        for k in range(steps - 1):
            out = model(input_ids[:1, prompt + k:prompt + k + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            decoded.append(out.logits[0, -1])
    return torch.stack(decoded), cache
