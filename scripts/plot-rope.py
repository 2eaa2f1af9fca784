#!/usr/bin/env python3
"""Plots a rope.h5: which RoPE chunks are elite across layers and KV heads for one r (left),
and the distance after each pick, averaged over KV heads, per layer (right). Saves a PNG.

    scripts/plot-rope.py rope.h5 --r 4 -o rope.png
"""
import argparse
import json

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rope", help="rope.h5 written by ekv-select-rope")
    parser.add_argument("--r", type=int, default=4, help="number of elite chunks to show")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    args = parser.parse_args()
    with h5py.File(args.rope, "r") as f:
        if f.attrs["ekv.type"] != "rope":
            raise SystemExit(f"{args.rope}: ekv.type is {f.attrs['ekv.type']}, expected rope")
        r_max, chunks, heads = int(f.attrs["r_max"]), int(f.attrs["chunks"]), int(f.attrs["kv_heads"])
        begin, end = int(f.attrs["layer_begin"]), int(f.attrs["layer_end"])
        if not 1 <= args.r <= r_max:
            raise SystemExit(f"--r {args.r}: the file holds r = 1..{r_max}")
        grid = np.zeros(((end - begin) * heads, chunks))
        curves = []
        for row, layer in enumerate(range(begin, end)):
            elite = f[f"layers/{layer}/elite"][()]
            for head in range(heads):
                grid[row * heads + head, elite[head, args.r - 1, :args.r]] = 1
            curves.append(f[f"layers/{layer}/distance"][()].mean(axis=0))
        title = f"{f.attrs['method']}/{f.attrs['objective']}"
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    left.imshow(grid, aspect="auto", cmap="Greys", interpolation="nearest")
    left.set_xlabel("RoPE chunk (0 = highest frequency)")
    left.set_ylabel("layer × KV head")
    left.set_yticks([i * heads for i in range(end - begin)][::2], [str(l) for l in range(begin, end)][::2])
    left.set_title(f"elite chunks, r = {args.r} ({title})")
    cmap = plt.get_cmap("viridis")
    for i, curve in enumerate(curves):
        right.semilogy(range(len(curve)), np.maximum(curve, 1e-12), color=cmap(i / max(1, len(curves) - 1)), lw=1)
    right.set_xlabel("elite chunks r")
    right.set_ylabel("distance on calibration X (mean over KV heads)")
    right.set_title("distance after each pick, one line per layer (dark = first)")
    figure.tight_layout()
    figure.savefig(args.output, dpi=100)
    print(json.dumps({"output": args.output, "layers": end - begin, "kv_heads": heads, "r": args.r}))


if __name__ == "__main__":
    main()
