#!/usr/bin/env python3
"""Plots recovery against training tokens. Left: the held-out KL that ekv-uptrain measured on
validation windows of its training corpus during stage 2 (from each output's config.json).
Right: KL on the evaluation text (ekv-check compare reports) against the stage-2 tokens of the
model each report measured (stage-1-only and training-free models at 0).

    scripts/plot-uptrain.py -o recovery.png --run "full=out/model-recovered" \\
        --point "training-free=out/fidelity.json" --point "full=out/fidelity-recovered.json=out/model-recovered"
"""
import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def summary(folder):
    config = json.loads((pathlib.Path(folder) / "config.json").read_text())
    if "ekv_uptrain" not in config:
        raise SystemExit(f"{folder}/config.json: no ekv_uptrain block: not an ekv-uptrain output")
    return config["ekv_uptrain"]["summary"]


def stage2_tokens(folder):
    return summary(folder).get("stage2", {}).get("tokens", 0) if folder else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="LABEL=FOLDER: an ekv-uptrain output")
    parser.add_argument("--point", action="append", default=[],
                        help="LABEL=REPORT.json[=FOLDER]: an ekv-check compare report, of FOLDER's model")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for item in args.run:
        label, folder = item.split("=", 1)
        history = [h for h in summary(folder).get("stage2", {}).get("history", []) if "heldout_kl" in h]
        left.plot([h["tokens"] for h in history], [h["heldout_kl"] for h in history], marker="o", label=label)
    left.set(xlabel="stage-2 training tokens", ylabel="KL, nats (held-out training-corpus windows)",
             title="during stage 2")
    left.legend()
    for item in args.point:
        label, report, *folder = item.split("=")
        fidelity = json.loads(pathlib.Path(report).read_text())
        tokens = stage2_tokens(folder[0] if folder else None)
        right.scatter([tokens], [fidelity["mean_kl"]])
        right.annotate(f"{label}\nppl {fidelity['ppl_compressed']:.1f}", (tokens, fidelity["mean_kl"]), fontsize=8)
    right.set(xlabel="stage-2 training tokens", ylabel="KL, nats (evaluation text)", title="held-out evaluation text")
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"final: plot={args.output}")


if __name__ == "__main__":
    main()
