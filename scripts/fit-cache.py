#!/usr/bin/env python3
"""The smallest KV cache that keeps a model good enough (`make fit KL=x`): bisection on the cache
ratio for the largest held-out KL a user accepts, everything else as the preset (its RoPE selection
OUT/rope-elite-l1.h5 and r, its J-LRD options). Each probe compresses, exports and measures the
mean KL on the calibration corpus's held-out windows (`ekv-check compare --held-out-from calib.h5`:
windows none of calib.h5's sampled sequences touches), never on the evaluation corpus, which stays
for reporting. KL is taken to fall as the cache grows; the answer is the smallest probed ratio at
or under the target, within --tolerance of the largest probed one above it.

A preset with one latent rank for every layer is searched over that rank (integers); a budget
preset over its budget. Writes OUT/fit-kl<x>.json and .md (every probe, the choice and why) and
prints the `make CACHE=...` that builds the chosen model.

    scripts/fit-cache.py --out out --preset configs/smollm2-135m-25.toml --bin build/apps \\
        --model MODEL --corpora CORPORA --kl 0.5
"""
import json
import math
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import cache_points  # noqa: E402


class Search:
    """The bracket (lo fails or is unmeasured, hi passes or is unmeasured) on an integer grid:
    rank for a uniform preset, budget in units of `tolerance` for a budget preset."""

    def __init__(self, target, lo, hi, step):
        self.target, self.lo, self.hi, self.step = target, lo, hi, step
        self.probes = {}  # grid point -> KL

    def done(self):
        return self.hi - self.lo <= self.step

    def next_point(self):
        return (self.lo + self.hi) // 2

    def record(self, point, kl):
        self.probes[point] = kl
        if kl <= self.target:
            self.hi = point
        else:
            self.lo = point

    def probes_left(self):
        return max(0, math.ceil(math.log2(max(1, (self.hi - self.lo) / self.step))))


def bisect(search, measure):
    """Measures the top of the range first: a target that even it misses is answered at once (a
    bisection toward it would probe log2(range/step) points that all fail). Then runs
    `measure(point) -> KL` until the bracket is within the step and makes sure the answer was
    measured. Returns the passing point, or None when the top of the range fails."""
    if search.hi not in search.probes:
        search.record(search.hi, measure(search.hi))
        if search.probes[search.hi] > search.target:
            return None
    while not search.done():
        point = search.next_point()
        search.record(point, measure(point))
    if search.hi not in search.probes:
        search.record(search.hi, measure(search.hi))
    return search.hi if search.probes[search.hi] <= search.target else None


def main():
    parser = cache_points.tool_parser(__doc__, "the pipeline's folder (calib.h5, rope-elite-l1.h5)",
                                      "scripts/make-corpora.sh's folder (its calib.txt)")
    parser.add_argument("--kl", type=float, required=True, help="the largest mean KL (nats) accepted")
    parser.add_argument("--tolerance", type=float, default=0.01, help="cache-ratio resolution of the answer")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows of 512 calibration tokens a probe scores")
    args = parser.parse_args()
    if args.kl <= 0:
        sys.exit(f"--kl {args.kl}: must be positive (KL 0 is the original model)")
    if not 0 < args.tolerance < 0.5:
        sys.exit(f"--tolerance {args.tolerance}: a cache-ratio step in (0, 0.5)")

    out = pathlib.Path(args.out)
    calib, rope = out / "calib.h5", out / "rope-elite-l1.h5"
    for f in (calib, rope):
        if not f.exists():
            sys.exit(f"{f} is missing: run make (or make {f}) first")
    jlrd = cache_points.preset_section(args.preset, "jlrd")
    r = int(jlrd.get("r", 4))
    budget = "budget" in jlrd
    kv_heads, head_dim = cache_points.cache_shape(calib)
    full = 2 * kv_heads * head_dim
    elite_only = cache_points.ratio_of(0, r, kv_heads, head_dim)
    text = pathlib.Path(args.corpora) / "calib.txt"
    tools = cache_points.Tools(args.bin, args.model, args.preset, out / "fit")

    if budget:  # grid in tolerance steps of the budget, above what r alone caches
        unit = args.tolerance
        search = Search(args.kl, math.floor(elite_only / unit), math.floor(1 / unit), 1)

        def ratio_at(point):
            return point * unit
    else:  # grid of uniform ranks: rank 0 is r alone, the top is every non-elite key and value row
        search = Search(args.kl, 0, full - 2 * r * kv_heads, max(1, math.ceil(args.tolerance * full)))

        def ratio_at(point):
            return cache_points.ratio_of(point, r, kv_heads, head_dim)

    reports = {}
    started = time.monotonic()

    def measure(point):
        ratio = ratio_at(point)
        kind = "--budget" if budget else "--cache-ratio"
        name = f"budget-{ratio:.4f}" if budget else f"rank-{point}"
        elapsed = time.monotonic() - started
        eta = f", about {elapsed / len(reports) * (search.probes_left() + 1) / 60:.0f} min left" if reports else ""
        print(f"+ probe {len(reports) + 1}: cache {100 * ratio:.2f} % ({name}); bracket "
              f"{100 * ratio_at(search.lo):.2f}–{100 * ratio_at(search.hi):.2f} %{eta}", file=sys.stderr)
        point_report = cache_points.measure_point(
            tools, name, rope, calib, ["--config", args.preset, kind, f"{ratio:.6f}"], text, args.windows,
            held_out_from=calib)["free"]
        reports[point] = point_report
        print(f"  KL {point_report['mean_kl']:.4f} ({'≤' if point_report['mean_kl'] <= args.kl else '>'} {args.kl}), "
              f"ppl {point_report['ppl_compressed']:.2f}, top-1 {100 * point_report['top1_agreement']:.1f} %",
              file=sys.stderr)
        return point_report["mean_kl"]

    chosen = bisect(search, measure)
    probes = [{"cache_ratio": round(reports[p]["cache_ratio"], 6), "kv_rank": cache_points.mean_rank(reports[p]),
               "kl": reports[p]["mean_kl"], "ppl": reports[p]["ppl_compressed"],
               "top1": reports[p]["top1_agreement"], "passes": reports[p]["mean_kl"] <= args.kl}
              for p in sorted(reports)]
    failing = [p for p in sorted(reports) if reports[p]["mean_kl"] > args.kl and (chosen is None or p < chosen)]
    if chosen is None:
        reason = (f"even {100 * ratio_at(search.hi):.1f} % of the cache gives KL {search.probes[search.hi]:.4f} > "
                  f"{args.kl}: no ratio of this preset reaches it (its r = {r} elite chunks and selection limit it)")
    else:
        below = (f"the largest failing probe, {100 * ratio_at(failing[-1]):.2f} %, gave KL "
                 f"{search.probes[failing[-1]]:.4f}" if failing else
                 f"nothing smaller was probed: r = {r} alone caches {100 * elite_only:.2f} %")
        reason = (f"{100 * ratio_at(chosen):.2f} % is the smallest probed cache with held-out KL "
                  f"{search.probes[chosen]:.4f} ≤ {args.kl}; {below}")
    result = {"target_kl": args.kl, "preset": args.preset, "r": r, "kind": "budget" if budget else "uniform rank",
              "text": str(text), "held_out_from": str(calib), "windows": args.windows,
              "tolerance": args.tolerance, "chosen": None, "reason": reason, "probes": probes}
    if chosen is not None:
        cache = f"{ratio_at(chosen):.6f}"
        result["chosen"] = {"cache_ratio": float(cache), "kv_rank": cache_points.mean_rank(reports[chosen]),
                            "kl": reports[chosen]["mean_kl"], "ppl": reports[chosen]["ppl_compressed"],
                            "top1": reports[chosen]["top1_agreement"], "make": f"make CACHE={cache}"}
    stem = f"fit-kl{args.kl:g}"
    report = out / f"{stem}.md"
    cache_points.write_json(out / f"{stem}.json", result)
    lines = [f"# Smallest cache with held-out KL ≤ {args.kl} ({args.preset})", "",
             f"Held-out: {args.windows} windows × 512 tokens of {text} that {calib} never sampled.", "",
             "| cache | latent (mean) | KL | ppl | top-1 % | ≤ target |", "|---|---|---|---|---|---|"]
    for p in probes:
        lines.append(f"| {100 * p['cache_ratio']:.2f} % | {p['kv_rank']} | {p['kl']:.4f} | {p['ppl']:.2f} | "
                     f"{100 * p['top1']:.1f} | {'yes' if p['passes'] else 'no'} |")
    lines += ["", f"**Chosen:** {reason}."]
    if chosen is not None:
        lines.append(f"Build it: `{result['chosen']['make']}` (with the same PRESET).")
    report.write_text("\n".join(lines) + "\n")
    if chosen is None:
        sys.exit(f"fit: {reason} ({report})")
    print(f"final: cache_ratio={cache} kv_rank={cache_points.mean_rank(reports[chosen])} kl={reports[chosen]['mean_kl']:.5f} "
          f"probes={len(reports)} report={report} make=\"make CACHE={cache}\"")


if __name__ == "__main__":
    main()
