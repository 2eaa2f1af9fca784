"""One compressed model at one cache ratio, measured: ekv-jlrd, ekv-export, ekv-check compare, and
optionally the preset's short recovery (ekv-uptrain [uptrain]) and its compare. The loops of
`make curve` (scripts/cache-curve.py) and `make fit` (scripts/fit-cache.py) share it.

Each point's reports are kept (DIR/NAME.json, DIR/NAME-recovered.json) and a point whose report
exists is not measured again, so an interrupted curve or fit resumes where it stopped and two fits
share the probes they have in common. The exports (hundreds of MB each) are deleted once measured.
"""
import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import time
import tomllib

import h5py


def preset_section(preset, name):
    """One [section] of a preset (configs/*.toml) as a dict; {} when absent."""
    with open(preset, "rb") as f:
        data = tomllib.load(f)
    section = data
    for part in name.split("."):
        section = section.get(part, {})
    return section


def cache_shape(calib):
    """(KV heads, head dim) from calib.h5's root attributes: a cache ratio's unit."""
    with h5py.File(calib, "r") as f:
        return int(f.attrs["kv_heads"]), int(f.attrs["head_dim"])


def ratio_of(rank, r, kv_heads, head_dim):
    """Cache ratio of a uniform latent: (2 r G + d_kv) / (2 G d_h), docs/method.md."""
    return (2 * r * kv_heads + rank) / (2 * kv_heads * head_dim)


# The free-layout selection every curve point and grown-r fit probe reads: r can follow the ratio.
R_MAX = 16
# The share of the cache the preset's configuration gives its elite dims when r follows the ratio:
# 3/8, what measured best at 25 % on SmolLM2 (docs/results.md, "The cache a user chooses").
ELITE_SHARE = 3 / 8


def elite_chunks(ratio, share, head_dim):
    """r for a cache ratio: the elite dims (r chunks of 2 per KV head, K only) take `share` of it."""
    return max(1, min(R_MAX, round(share * ratio * head_dim)))


def free_selection(tools, out, calib):
    """The preset's [select-rope] method and objective in the free layout at r_max R_MAX, made once
    as OUT/curve/rope-free.h5 and shared by `make curve` and `make fit`."""
    rope = pathlib.Path(out) / "curve" / "rope-free.h5"
    if not rope.exists():
        rope.parent.mkdir(parents=True, exist_ok=True)
        print(f"+ RoPE selection for every r <= {R_MAX} (free layout): {rope}", file=sys.stderr)
        tools.run("select-rope-free", tools.tool("select-rope"), "--config", tools.preset, "--model", tools.model,
                  "--calib", calib, "--layout", "free", "--r-max", R_MAX, "-o", rope)
    return rope


def tool_parser(doc, out_help, corpora_help):
    """The options every loop over the tools takes (the Makefile's TOOLS_ARGS)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--preset", required=True, help="the preset (configs/*.toml) every tool reads")
    parser.add_argument("--bin", required=True, help="the built tools (build/apps)")
    parser.add_argument("--model", required=True, help="the original model (GGUF)")
    parser.add_argument("--corpora", required=True, help=corpora_help)
    return parser


class Tools:
    """The built tools, the model and where the probes' files and logs go."""

    def __init__(self, bin_dir, model, preset, work):
        self.bin = pathlib.Path(bin_dir)
        self.model = str(model)
        self.preset = str(preset)
        self.work = pathlib.Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "logs").mkdir(exist_ok=True)

    def run(self, name, *args):
        """Runs one tool with its stderr in logs/NAME.log; a failure stops the loop with the log's tail."""
        log = self.work / "logs" / f"{name}.log"
        command = [str(a) for a in args]
        with open(log, "w") as f:
            f.write(" ".join(command) + "\n")
            f.flush()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=f)
        if done.returncode != 0:
            tail = log.read_text().splitlines()[-8:]
            sys.exit(f"{command[0]} failed (exit {done.returncode}); {log}:\n  " + "\n  ".join(tail))

    def tool(self, name):
        return self.bin / f"ekv-{name}"


def mean_rank(report):
    """The latent size of a compare report: its per-layer kv_rank list (or one rank), as the mean."""
    ranks = report["kv_rank"]
    ranks = ranks if isinstance(ranks, list) else [ranks]
    return round(sum(ranks) / len(ranks), 1)


def write_json(path, data):
    """Whole or not at all: a report that exists is a point measured."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    partial.replace(path)


def compare_report(tools, name, folder, text, windows, held_out_from):
    """ekv-check compare of one export folder; returns its JSON report."""
    report = tools.work / f"{name}.compare.json"
    extra = ["--held-out-from", held_out_from] if held_out_from else []
    tools.run(f"compare-{name}", tools.tool("check"), "compare", "--model", tools.model, "--compressed", folder,
              "--text", text, "--max-windows", windows, *extra, "-o", report)
    data = json.loads(report.read_text())
    report.unlink()
    return data


def measure_point(tools, name, rope, calib, jlrd_args, text, windows=16, held_out_from=None, train_text=None):
    """Compresses with `ekv-jlrd jlrd_args`, exports and measures on `text`; with `train_text`, also
    the preset's short recovery of that export. Returns {"free": report, "recovered": report or None,
    "jlrd_seconds": s}, from the kept reports when they exist."""
    report = tools.work / f"{name}.json"
    recovered_report = tools.work / f"{name}-recovered.json"
    if report.exists() and (train_text is None or recovered_report.exists()):
        free = json.loads(report.read_text())
        return {"free": free, "recovered": json.loads(recovered_report.read_text()) if train_text else None,
                "jlrd_seconds": free.get("jlrd_seconds")}
    jlrd = tools.work / f"{name}.h5"
    export = tools.work / f"{name}-export"
    started = time.monotonic()
    tools.run(f"jlrd-{name}", tools.tool("jlrd"), "--model", tools.model, "--rope", rope, "--calib", calib,
              *jlrd_args, "-o", jlrd)
    seconds = round(time.monotonic() - started, 1)
    tools.run(f"export-{name}", tools.tool("export"), "--model", tools.model, "--rope", rope, "--jlrd", jlrd,
              "-o", export)
    free = compare_report(tools, name, export, text, windows, held_out_from)
    free["jlrd_seconds"] = seconds
    free["jlrd_args"] = [str(a) for a in jlrd_args]
    recovered = None
    if train_text is not None:
        trained = tools.work / f"{name}-recovered"
        tools.run(f"uptrain-{name}", tools.tool("uptrain"), "--config", tools.preset, "--export", export,
                  "--model", tools.model, "--text", train_text, "-o", trained)
        recovered = compare_report(tools, f"{name}-recovered", trained, text, windows, held_out_from)
        # ekv-uptrain undoes a recovery that raised the training text's held-out KL (its config.json
        # says which weights it kept); the curve says so rather than show an untrained row as trained.
        summary = json.loads((trained / "config.json").read_text())["ekv_uptrain"]["summary"]
        recovered["recovery_kept"] = summary["kept"]
        write_json(recovered_report, recovered)
        shutil.rmtree(trained)
    write_json(report, free)
    shutil.rmtree(export)
    jlrd.unlink()
    jlrd.with_suffix(".csv").unlink(missing_ok=True)
    return {"free": free, "recovered": recovered, "jlrd_seconds": seconds}
