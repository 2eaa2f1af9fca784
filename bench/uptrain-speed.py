#!/usr/bin/env python3
"""Stage-2 training speed of ekv-uptrain per configuration, in interleaved rounds.

Each variant is a real ekv-uptrain run (stage 2 alone, --steps S of --batch 1 --accum 2 windows
of 512 tokens, no held-out checks inside) on the same export, teacher and corpus; its speed is
the tokens of stage 2 over stage 2's seconds from the output's config.json (checkpoint writes
included). Rounds interleave the variants so that a change of the machine's load touches all of
them; the table gives every round and the median, the load averages before and after, and
with --busy N, N competing busy processes (a shared machine). docs/results.md, "Recovery speed".

  bench/uptrain-speed.py --bin build/apps --export out/model-elitekv --model $MODEL \\
      --text $CORPORA/train.txt [--rounds 2] [--steps 4] [--busy 0] [--base OLD/python]

--base adds the variant "before": the python/ tree of another checkout (e.g. a git worktree of
the commit before this change) run as it was (fp32, the thread setting it had).
"""
import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from elitekv.uptrain import distributed  # noqa: E402

# label, processes, options, environment
VARIANTS = [
    ("fp32, 1 process x 2 threads", 1, ["--precision", "fp32", "--threads", "2"], {}),
    ("bf16, 1 process x 2 threads", 1, ["--precision", "bf16", "--threads", "2"], {}),
    ("bf16, 1 process x 2 threads, spinning OpenMP (OMP_WAIT_POLICY=ACTIVE)", 1,
     ["--precision", "bf16", "--threads", "2"], {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("bf16, torchrun 2 processes x 1 thread", 2, ["--precision", "bf16", "--threads", "1"], {}),
]


def busy():
    while True:
        pass


def run(args, label, processes, options, env, base, folder):
    output = os.path.join(folder, "out")
    common = ["--export", args.export, "--model", args.model, "--text", args.text, "-o", output,
              "--layer-steps", "0", "--steps", str(args.steps), "--batch", "1", "--accum", "2",
              "--windows", str(2 * args.steps), "--val-windows", "1", "--eval-every", "100000",
              "--checkpoint-every", str(args.steps)]
    environment = dict(os.environ, **env)
    if base:  # the older tree, run by the same Python
        environment.update(PYTHONPATH=base, EKV_TOOLS=args.bin)
        command = [sys.executable, "-m", "elitekv.uptrain", *common, "--threads", "2"]
    else:
        command = [os.path.join(args.bin, "ekv-uptrain"), *common, *options]
    if processes > 1:
        command = [*distributed.torchrun(processes), "--no_python", *command]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise SystemExit(f"{label}: exited {result.returncode}\n{result.stderr[-2000:]}")
    stage2 = json.load(open(os.path.join(output, "config.json")))["ekv_uptrain"]["summary"]["stage2"]
    return stage2["tokens"] / stage2["seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", required=True, help="folder of the ekv tools (the build's apps/)")
    p.add_argument("--export", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--text", required=True, help="the training corpus")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=4, help="stage-2 steps per run (1,024 tokens each)")
    p.add_argument("--busy", type=int, default=0, help="competing busy processes during the runs")
    p.add_argument("--base", default="", help="python/ folder of an older checkout: adds the variant 'before'")
    args = p.parse_args()
    variants = ([("before (--base), 1 process, --threads 2", 1, [], {})] if args.base else []) + VARIANTS
    hogs = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.busy)]
    for hog in hogs:
        hog.start()
    load_before = os.getloadavg()
    speeds = {label: [] for label, *_ in variants}
    start = time.monotonic()
    try:
        for round_ in range(args.rounds):
            for label, processes, options, env in variants:
                with tempfile.TemporaryDirectory() as folder:
                    speed = run(args, label, processes, options, env, args.base if label.startswith("before") else "",
                                folder)
                speeds[label].append(speed)
                print(f"round {round_ + 1}/{args.rounds}: {label}: {speed:.1f} tokens/s", file=sys.stderr, flush=True)
    finally:
        for hog in hogs:
            hog.terminate()
    print(f"{os.cpu_count()} cores, torch {torch.__version__}, {args.busy} competing busy processes, load average "
          f"{load_before[0]:.2f} before and {os.getloadavg()[0]:.2f} after, {args.rounds} interleaved rounds of "
          f"{args.steps} steps x 1,024 tokens, {time.monotonic() - start:.0f} s\n")
    print("| configuration | tokens/s per round | median |")
    print("|---|---|---|")
    for label, values in speeds.items():
        print(f"| {label} | {' / '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
