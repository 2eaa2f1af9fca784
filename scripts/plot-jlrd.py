#!/usr/bin/env python3
"""Plots J-LRD error against cache ratio from ekv-jlrd sweep tables (the CSV written beside
jlrd.h5): data error and attention-output error, each averaged over layers, one line per run.

    scripts/plot-jlrd.py -o jlrd.png "J-LRD whitened=a.csv" "S-LRD weight=b.csv"
"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def layer_means(path):
    """cache ratio -> (mean data error, mean output error) over the layers of one sweep CSV."""
    groups = defaultdict(list)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "cache_ratio" not in rows[0]:
        raise SystemExit(f"{path}: not an ekv-jlrd sweep table (no cache_ratio column)")
    for row in rows:
        groups[round(float(row["cache_ratio"]), 4)].append((float(row["data_error"]), float(row["output_error"])))
    return {ratio: tuple(sum(v) / len(v) for v in zip(*errors)) for ratio, errors in sorted(groups.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=sweep.csv")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args()
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    for run in args.runs:
        label, _, path = run.partition("=")
        if not path:
            raise SystemExit(f"{run}: expected LABEL=sweep.csv")
        means = layer_means(path)
        ratios = list(means)
        for column, axis in enumerate(axes):
            axis.plot(ratios, [means[r][column] for r in ratios], marker="o", label=label)
    for axis, title in zip(axes, ["data error ‖(W_J − BA)X‖ / ‖W_J X‖", "attention output error ‖o' − o‖ / ‖o‖"]):
        axis.set_xlabel("KV cache ratio (elite dims + latent) / full K,V")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("J-LRD vs S-LRD, weight vs whitened SVD (r = 4, means over layers)")
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
