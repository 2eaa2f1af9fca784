#!/usr/bin/env python3
"""The smallest KV cache that keeps a model good enough (`make fit KL=x`): bisection on the cache
ratio for the largest held-out KL a user accepts, the preset's J-LRD options otherwise. Each probe
compresses, exports and measures the mean KL on the calibration corpus's held-out windows
(`ekv-check compare --held-out-from calib.h5`: windows none of calib.h5's sampled sequences
touches), never on the evaluation corpus, which stays for reporting. KL is taken to fall as the
cache grows; the answer is the smallest probed ratio at or under the target, within --tolerance of
the largest probed one above it.

The elite chunks r follow the ratio by default (--r-rule grow: the elite dims take 3/8 of the
cache, as in `make curve`, from the free-layout selection OUT/curve/rope-free.h5): at the preset's
fixed r the RoPElite floor stops KL from falling (SmolLM2 at r = 7: KL 0.51 even at 100 %). A preset
of an engine layout (llama.cpp's, transformers') then has the chosen point measured once more in
that layout, with its own selection at the chosen r: what `make R=r CACHE=x` builds. --r-rule preset
keeps the preset's r and selection (OUT/rope-elite-l1.h5) and searches the latent alone: one rank
for every layer (integers), or a budget preset's budget.

Writes OUT/fit-kl<x>.json and .md (every probe, the choice, its layout and why) and prints the
`make ...` that builds the chosen model.

    scripts/fit-cache.py --out out --preset configs/smollm2-135m-25.toml --bin build/apps \\
        --model MODEL --corpora CORPORA --kl 0.5
"""
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
    parser = cache_points.tool_parser(__doc__, "the pipeline's folder (calib.h5; rope-elite-l1.h5 with --r-rule preset)",
                                      "scripts/make-corpora.sh's folder (its calib.txt)")
    parser.add_argument("--kl", type=float, required=True, help="the largest mean KL (nats) accepted")
    parser.add_argument("--tolerance", type=float, default=0.01, help="cache-ratio resolution of the answer")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows of 512 calibration tokens a probe scores")
    parser.add_argument("--r-rule", choices=("grow", "preset"), default="grow",
                        help="grow: r follows the ratio (free-layout probes, then the chosen point in the preset's "
                             "layout); preset: the preset's r and selection, only the latent searched")
    parser.add_argument("--no-layout-check", action="store_true",
                        help="with --r-rule grow, skip measuring the chosen point in the preset's engine layout "
                             "(its RoPE selection at the chosen r: minutes)")
    args = parser.parse_args()
    if args.kl <= 0:
        sys.exit(f"--kl {args.kl}: must be positive (KL 0 is the original model)")
    if not 0 < args.tolerance < 0.5:
        sys.exit(f"--tolerance {args.tolerance}: a cache-ratio step in (0, 0.5)")

    out = pathlib.Path(args.out)
    grow = args.r_rule == "grow"
    calib, preset_rope = out / "calib.h5", out / "rope-elite-l1.h5"
    for f in (calib,) if grow else (calib, preset_rope):
        if not f.exists():
            sys.exit(f"{f} is missing: run make (or make {f}) first")
    jlrd = cache_points.preset_section(args.preset, "jlrd")
    preset_r = int(jlrd.get("r", 4))
    budget = "budget" in jlrd
    kind = "--budget" if budget else "--cache-ratio"
    layout = cache_points.preset_section(args.preset, "select-rope").get("layout", "free")
    kv_heads, head_dim = cache_points.cache_shape(calib)
    full = 2 * kv_heads * head_dim
    elite_only = cache_points.ratio_of(0, preset_r, kv_heads, head_dim)
    text = pathlib.Path(args.corpora) / "calib.txt"
    tools = cache_points.Tools(args.bin, args.model, args.preset, out / "fit")

    # A probe of each rule: grid point -> (r, ratio, report name, RoPE selection, ekv-jlrd options).
    if grow:  # grid in tolerance steps of the ratio; r follows it
        free_rope = cache_points.free_selection(tools, out, calib)
        search = Search(args.kl, 0, math.floor(1 / args.tolerance), 1)

        def probe(point):
            ratio = point * args.tolerance
            r = cache_points.elite_chunks(ratio, cache_points.ELITE_SHARE, head_dim)
            return r, ratio, f"free-r{r}-{ratio:g}", free_rope, ["--config", args.preset, "--r", r, kind, f"{ratio:g}"]
    elif budget:  # grid in tolerance steps of the budget, above what r alone caches
        search = Search(args.kl, math.floor(elite_only / args.tolerance), math.floor(1 / args.tolerance), 1)

        def probe(point):
            ratio = point * args.tolerance
            return preset_r, ratio, f"budget-{ratio:.4f}", preset_rope, ["--config", args.preset, kind, f"{ratio:.6f}"]
    else:  # grid of uniform ranks: rank 0 is r alone, the top is every non-elite key and value row
        search = Search(args.kl, 0, full - 2 * preset_r * kv_heads, max(1, math.ceil(args.tolerance * full)))

        def probe(point):
            ratio = cache_points.ratio_of(point, preset_r, kv_heads, head_dim)
            return preset_r, ratio, f"rank-{point}", preset_rope, ["--config", args.preset, kind, f"{ratio:.6f}"]

    reports = {}
    started = time.monotonic()

    def measure(point):
        r, ratio, name, rope, jlrd_args = probe(point)
        elapsed = time.monotonic() - started
        eta = f", about {elapsed / len(reports) * (search.probes_left() + 1) / 60:.0f} min left" if reports else ""
        print(f"+ probe {len(reports) + 1}: cache {100 * ratio:.2f} %, r = {r} ({name}); bracket "
              f"{100 * probe(search.lo)[1]:.2f}–{100 * probe(search.hi)[1]:.2f} %{eta}", file=sys.stderr)
        point_report = cache_points.measure_point(tools, name, rope, calib, jlrd_args, text, args.windows,
                                                  held_out_from=calib)["free"]
        reports[point] = point_report
        print(f"  {summary(point_report, args.kl)}", file=sys.stderr)
        return point_report["mean_kl"]

    chosen = bisect(search, measure)
    probes = [probe_row(probe(p)[0], reports[p], args.kl) for p in sorted(reports)]
    failing = [p for p in sorted(reports) if reports[p]["mean_kl"] > args.kl and (chosen is None or p < chosen)]
    rule = "r growing with the ratio" if grow else f"r = {preset_r}"
    if chosen is None:
        reason = (f"even {100 * probe(search.hi)[1]:.1f} % of the cache gives KL {search.probes[search.hi]:.4f} > "
                  f"{args.kl}: no ratio of this preset with {rule} reaches it")
    else:
        below = (f"the largest failing probe, {100 * probe(failing[-1])[1]:.2f} %, gave KL "
                 f"{search.probes[failing[-1]]:.4f}" if failing else
                 "nothing smaller was probed" if grow else
                 f"nothing smaller was probed: r = {preset_r} alone caches {100 * elite_only:.2f} %")
        reason = (f"{100 * probe(chosen)[1]:.2f} % ({rule}, r = {probe(chosen)[0]}) is the smallest probed cache with "
                  f"held-out KL {search.probes[chosen]:.4f} ≤ {args.kl}; {below}")
    result = {"target_kl": args.kl, "preset": args.preset, "r_rule": args.r_rule,
              "preset_layout": layout, "probe_layout": "free" if grow else layout, "kind": "budget" if budget else "uniform rank",
              "text": str(text), "held_out_from": str(calib), "windows": args.windows,
              "tolerance": args.tolerance, "chosen": None, "layout_check": None, "reason": reason, "probes": probes}
    if chosen is not None:
        r, ratio, _, _, jlrd_args = probe(chosen)
        cache = f"{ratio:g}" if grow else f"{ratio:.6f}"
        make = f"make R={r} CACHE={cache}" if grow else f"make CACHE={cache}"
        result["chosen"] = {**probe_row(r, reports[chosen], args.kl), "make": make}
        if grow and layout != "free" and not args.no_layout_check:
            limit = layout_limit(layout, kv_heads, head_dim)
            result["layout_check"] = (layout_check(tools, calib, text, args, layout, r, ratio, jlrd_args)
                                      if limit is None or r <= limit else
                                      {"layout": layout, "r": r, "unavailable":
                                       f"{layout}'s layout holds at most r = {limit} ({kv_heads} KV heads × r slots at "
                                       f"distinct frequencies among {head_dim // 2} chunks); r = {r} needs the free layout"})
    write_reports(out, args, result)


def summary(report, target):
    return (f"KL {report['mean_kl']:.4f} ({'≤' if report['mean_kl'] <= target else '>'} {target}), "
            f"ppl {report['ppl_compressed']:.2f}, top-1 {100 * report['top1_agreement']:.1f} %")


def probe_row(r, report, target):
    return {"cache_ratio": round(report["cache_ratio"], 6), "r": r, "kv_rank": cache_points.mean_rank(report),
            "kl": report["mean_kl"], "ppl": report["ppl_compressed"], "top1": report["top1_agreement"],
            "passes": report["mean_kl"] <= target}


def layout_limit(layout, kv_heads, head_dim):
    """The largest r an engine layout holds, None when any r fits: llama.cpp's slots turn at one
    progression of distinct frequencies, so G·r of them must fit in a head's chunks
    (docs/method.md §11); transformers' multiset repeats a chunk as often as it needs."""
    return head_dim // 2 // kv_heads if layout == "llama.cpp" else None


def layout_check(tools, calib, text, args, layout, r, ratio, jlrd_args):
    """The chosen point in the preset's engine layout: its selection at the chosen r (what
    `make R=r` makes), then the same probe. The free layout's answer does not carry over by
    itself: an engine layout constrains which chunks stay elite."""
    rope = tools.work / f"rope-{layout}-r{r}.h5"
    print(f"+ the chosen point in the preset's {layout} layout: its RoPE selection at r = {r} (minutes), then one probe",
          file=sys.stderr)
    if not rope.exists():
        tools.run(f"select-rope-{layout}-r{r}", tools.tool("select-rope"), "--config", args.preset, "--model",
                  tools.model, "--calib", calib, "--r-max", r, "-o", rope)
    report = cache_points.measure_point(tools, f"{layout}-r{r}-{ratio:g}", rope, calib, jlrd_args, text, args.windows,
                                        held_out_from=calib)["free"]
    print(f"  {layout} layout: {summary(report, args.kl)}", file=sys.stderr)
    return {"layout": layout, **probe_row(r, report, args.kl)}


def build_advice(chosen, check, result):
    """The report's lines after the choice: the preset's layout measured (or why not) and what builds it."""
    lines = []
    if check is not None and "unavailable" in check:
        lines += [f"Not in the preset's layout: {check['unavailable']}.",
                  f"Build it with a free-layout preset (it runs in ekv and in transformers with remote code): "
                  f"`make PRESET=... {chosen['make'].removeprefix('make ')}`."]
    elif check is not None:
        verdict = "meets the target too" if check["passes"] else "misses the target there"
        lines.append(f"In the preset's {check['layout']} layout (its own selection at r = {check['r']}): KL "
                     f"{check['kl']:.4f}, ppl {check['ppl']:.2f}, top-1 {100 * check['top1']:.1f} %: {verdict}.")
        if check["passes"]:
            lines.append(f"Build it: `{chosen['make']}` (with the same PRESET).")
        else:
            lines += ["The measured answer is the free layout's (a free-layout preset, e.g. configs/*-free.toml: it "
                      "runs in ekv and in transformers with remote code); for the engine layout, fit a lower KL.",
                      f"`{chosen['make']}` (with the same PRESET) builds the {check['layout']} layout measured above; "
                      "the free layout's, which met the target: the same with a free-layout preset."]
    else:
        if result["probe_layout"] != result["preset_layout"]:
            lines.append(f"Not measured in the preset's own {result['preset_layout']} layout (--no-layout-check).")
        lines.append(f"Build it: `{chosen['make']}` (with the same PRESET).")
    return lines


def write_reports(out, args, result):
    """OUT/fit-kl<x>.json and .md; exits non-zero when no ratio reaches the target."""
    stem = f"fit-kl{args.kl:g}"
    report = out / f"{stem}.md"
    cache_points.write_json(out / f"{stem}.json", result)
    probe_layout = result["probe_layout"]
    lines = [f"# Smallest cache with held-out KL ≤ {args.kl} ({args.preset})", "",
             f"Held-out: {args.windows} windows × 512 tokens of {result['text']} that {result['held_out_from']} never "
             f"sampled. Probes in the {probe_layout} layout.", "",
             "| cache | r | latent (mean) | KL | ppl | top-1 % | ≤ target |", "|---|---|---|---|---|---|---|"]
    for p in result["probes"]:
        lines.append(f"| {100 * p['cache_ratio']:.2f} % | {p['r']} | {p['kv_rank']} | {p['kl']:.4f} | {p['ppl']:.2f} | "
                     f"{100 * p['top1']:.1f} | {'yes' if p['passes'] else 'no'} |")
    lines += ["", f"**Chosen:** {result['reason']}."]
    chosen, check = result["chosen"], result["layout_check"]
    if chosen is not None:
        lines += build_advice(chosen, check, result)
    report.write_text("\n".join(lines) + "\n")
    if chosen is None:
        sys.exit(f"fit: {result['reason']} ({report})")
    print(f"final: cache_ratio={chosen['cache_ratio']} r={chosen['r']} kv_rank={chosen['kv_rank']} kl={chosen['kl']:.5f} "
          f"probes={len(result['probes'])}" + (f" {check['layout']}_kl={check['kl']:.5f}" if check and "kl" in check else "") +
          f" report={report} make=\"{chosen['make']}\"")


if __name__ == "__main__":
    main()
