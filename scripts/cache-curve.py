#!/usr/bin/env python3
"""The cache-vs-quality curve (`make curve`): held-out KL, perplexity and top-1 agreement against
the cache ratio, for the preset's J-LRD configuration and the paper's plain one, training-free and
(--recover) after the preset's short recovery. Writes OUT/curve/curve.csv, curve.md and curve.png.

Every ratio uses one RoPE selection: the preset's method and objective in the free layout at
r_max 16 (OUT/curve/rope-free.h5, made once from OUT/calib.h5), so r can follow the ratio. The
preset's configuration gives the elite dims 3/8 of the cache (r = 3 F d_h / 8, what measured best
at 25 %), the paper's a quarter (r = F d_h / 4), both clamped to 1..16. An engine layout (the main
job's llama.cpp slots) is made for one r and is measured by the main job itself, not here.

    scripts/cache-curve.py --out out --preset configs/smollm2-135m-25.toml --bin build/apps \\
        --model MODEL --corpora CORPORA [--ratios 0.1,0.25,0.5] [--configs pipeline,paper]
        [--recover [--recover-ratios 0.1,0.5]]
"""
import csv
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cache_points  # noqa: E402

DEFAULT_RATIOS = "0.1,0.15,0.2,0.25,0.3,0.4,0.5,0.6,0.75"
# name: (label, share of the cache given to the elite dims, ekv-jlrd options beyond --r and the ratio)
CONFIGS = {
    "pipeline": ("the preset's J-LRD (whitened, chunk maps, attention weights, W_o refit)", cache_points.ELITE_SHARE,
                 None),
    "paper": ("the paper's plain J-LRD (weight SVD, uniform rank)", 1 / 4,
              ["--mode", "joint", "--svd", "weight", "--chunk-map", "none", "--weighting", "none"]),
}


def jlrd_options(config, preset, ratio, r):
    """ekv-jlrd's options for one point: the preset's [jlrd] (its kind of ratio: one rank or a
    budget) with r and the ratio replaced, or the paper's options without the preset."""
    _, _, own = CONFIGS[config]
    if own is not None:
        return ["--r", r, *own, "--cache-ratio", ratio]
    kind = "--budget" if "budget" in cache_points.preset_section(preset, "jlrd") else "--cache-ratio"
    return ["--config", preset, "--r", r, kind, ratio]


def row(config, ratio, r, which, report, seconds):
    return {"config": config, "stage": which, "ratio": ratio, "r": r,
            "cache_ratio": round(report["cache_ratio"], 4), "kv_rank": cache_points.mean_rank(report),
            "ppl_original": round(report["ppl_original"], 3), "ppl": round(report["ppl_compressed"], 3),
            "kl": round(report["mean_kl"], 4), "top1": round(100 * report["top1_agreement"], 2),
            "layer_error": round(report["mean_layer_error"], 4), "jlrd_seconds": seconds,
            "windows": report["windows"], "recovery_kept": report.get("recovery_kept", "")}


def plot(rows, path, title):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    series = {}
    for r in rows:
        series.setdefault((r["config"], r["stage"]), []).append(r)
    for (config, stage), points in series.items():
        points.sort(key=lambda p: p["cache_ratio"])
        x = [100 * p["cache_ratio"] for p in points]
        label = config + (" + short recovery" if stage == "recovered" else "")
        style = "--" if stage == "recovered" else "-"
        for axis, key in zip(axes, ("kl", "ppl", "top1")):
            axis.plot(x, [p[key] for p in points], style, marker="o", label=label)
    original = rows[0]["ppl_original"]
    axes[1].axhline(original, color="grey", linestyle=":", label=f"original ({original:.2f})")
    axes[1].set_yscale("log")
    for axis, name in zip(axes, ("mean KL (nats)", "perplexity", "top-1 agreement (%)")):
        axis.set_xlabel("KV cache (% of the original)")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def table(rows, text, windows):
    lines = [f"Held-out: {windows} windows × 512 tokens of {text}; no uptraining unless the stage says so. "
             "\"kept the export given\": the recovery raised the training text's held-out KL, so ekv-uptrain "
             "kept the weights it was given.", "",
             "| config | stage | cache | r | latent | ppl (original) | ppl | KL | top-1 % | layer error | ekv-jlrd s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["config"], r["stage"], r["cache_ratio"])):
        stage = r["stage"] + (f" (kept {r['recovery_kept']})" if r["recovery_kept"] not in ("", "trained") else "")
        lines.append(f"| {r['config']} | {stage} | {100 * r['cache_ratio']:.1f} % | {r['r']} | {r['kv_rank']} | "
                     f"{r['ppl_original']} | {r['ppl']} | {r['kl']} | {r['top1']} | {r['layer_error']} | "
                     f"{r['jlrd_seconds']} |")
    return "\n".join(lines) + "\n"


def main():
    parser = cache_points.tool_parser(__doc__, "the pipeline's folder (its calib.h5; writes OUT/curve/)",
                                      "scripts/make-corpora.sh's folder")
    parser.add_argument("--ratios", default=DEFAULT_RATIOS, help=f"cache ratios (default {DEFAULT_RATIOS})")
    parser.add_argument("--configs", default="pipeline,paper", help="of: " + ", ".join(CONFIGS))
    parser.add_argument("--paper-ratios",
                        help="the paper's configuration at only these of --ratios (default: every ratio); "
                             "it is unusable below 75 %% on SmolLM2, so a second family can sample it sparsely")
    parser.add_argument("--recover", action="store_true",
                        help="also recover each of the preset's points with its [uptrain] and measure that")
    parser.add_argument("--recover-ratios",
                        help="with --recover, recover only those of the curve's ratios that are among these "
                             "(default: every ratio); a point costs "
                             "the preset's short recovery, about 4 minutes for SmolLM2 on 2 cores")
    parser.add_argument("--train-text", help="the recovery's text (default: CORPORA/train.txt)")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows of 512 tokens (evaluation corpus)")
    args = parser.parse_args()

    ratios = [float(x) for x in args.ratios.split(",")]
    recover_ratios = set(float(x) for x in args.recover_ratios.split(",")) if args.recover_ratios else set(ratios)
    if not args.recover and args.recover_ratios:
        sys.exit("--recover-ratios needs --recover")
    if args.recover and not recover_ratios & set(ratios):
        sys.exit(f"--recover-ratios: none of {sorted(recover_ratios)} is among --ratios {sorted(ratios)}")
    paper_ratios = [float(x) for x in args.paper_ratios.split(",")] if args.paper_ratios else ratios
    if set(paper_ratios) - set(ratios):
        sys.exit(f"--paper-ratios: {sorted(set(paper_ratios) - set(ratios))} not among --ratios {sorted(ratios)}")
    configs = args.configs.split(",")
    for c in configs:
        if c not in CONFIGS:
            sys.exit(f"--configs: {c!r} is not one of {', '.join(CONFIGS)}")
    for f in ratios:
        if not 0 < f <= 1:
            sys.exit(f"--ratios: {f} is not a cache ratio in (0, 1]")
    out = pathlib.Path(args.out)
    calib = out / "calib.h5"
    if not calib.exists():
        sys.exit(f"{calib} is missing: run make (or make {calib}) first")
    text = pathlib.Path(args.corpora) / "eval.txt"
    train_text = args.train_text or str(pathlib.Path(args.corpora) / "train.txt")
    tools = cache_points.Tools(args.bin, args.model, args.preset, out / "curve")
    rope = cache_points.free_selection(tools, out, calib)
    _, head_dim = cache_points.cache_shape(calib)

    rows = []
    points = [(c, f) for c in configs for f in (paper_ratios if c == "paper" else ratios)]
    for i, (config, ratio) in enumerate(points):
        r = cache_points.elite_chunks(ratio, CONFIGS[config][1], head_dim)
        name = f"{config}-{ratio:g}"
        print(f"+ [{i + 1}/{len(points)}] {CONFIGS[config][0]} at {100 * ratio:g} % (r = {r})", file=sys.stderr)
        recover = args.recover and config == "pipeline" and ratio in recover_ratios
        point = cache_points.measure_point(tools, name, rope, calib, jlrd_options(config, args.preset, ratio, r),
                                           text, args.windows, train_text=train_text if recover else None)
        rows.append(row(config, ratio, r, "training-free", point["free"], point["jlrd_seconds"]))
        if point["recovered"]:
            rows.append(row(config, ratio, r, "recovered", point["recovered"], point["jlrd_seconds"]))
        last = rows[-1]
        print(f"  cache {100 * last['cache_ratio']:.1f} %: ppl {last['ppl']}, KL {last['kl']}, top-1 {last['top1']} %",
              file=sys.stderr)

    with open(tools.work / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (tools.work / "curve.md").write_text(table(rows, text, args.windows))
    plot(rows, tools.work / "curve.png", f"{pathlib.Path(args.model).name}: held-out quality against KV cache")
    print(f"final: points={len(rows)} csv={tools.work / 'curve.csv'} figure={tools.work / 'curve.png'}")


if __name__ == "__main__":
    main()
