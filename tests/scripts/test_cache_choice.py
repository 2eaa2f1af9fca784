#!/usr/bin/env python3
"""Choosing a cache (`make fit`, `make curve`): the bisection finds the smallest passing point of a
planted KL curve within its step; fit-cache.py, run against stand-in tools whose KL is a planted
function of the cache ratio, picks the ratio the plant says, measures on the calibration corpus's
held-out windows, leaves no export behind and re-uses its probes on a second run; the curve's r
follows the ratio and a budget preset keeps its kind. The real tools' numbers: docs/results.md."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import h5py

ROOT = pathlib.Path(__file__).resolve().parents[2]


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def load(name):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bisection():
    fit = load("fit-cache")
    measured = []

    def kl(point):  # 10/point: passes 0.5 from point 20 on
        return 10 / point if point else float("inf")

    def planted(point):
        measured.append(point)
        return kl(point)

    search = fit.Search(0.5, 0, 342, 4)
    chosen = fit.bisect(search, planted)
    check(chosen is not None and 20 <= chosen < 24, f"chosen {chosen}: the first passing point is 20, step 4")
    failing = max(p for p in measured if kl(p) > 0.5)
    check(chosen - failing <= 4, f"the answer {chosen} is not within a step of the failing probe {failing}")
    check(all(0 < p <= 342 for p in measured), f"probes outside the range: {measured}")
    check(len(set(measured)) <= 8, f"{len(measured)} probes for a range of 342 in steps of 4")
    measured.clear()
    never = fit.bisect(fit.Search(0.001, 0, 342, 4), planted)
    check(never is None and measured == [342], f"a target the top misses: no answer, after one probe ({measured})")


# Stand-ins for ekv-jlrd, ekv-export and ekv-check compare: the ratio travels through the files,
# and compare reports KL = 0.1 / ratio (so KL <= 0.5 from 20 % of the cache on).
FAKE_TOOL = r'''#!/usr/bin/env python3
import json, pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
log = pathlib.Path(__file__).parent / "calls.log"
with open(log, "a") as f:
    f.write(pathlib.Path(__file__).name + " " + " ".join(args) + "\n")
name = pathlib.Path(__file__).name
if name == "ekv-jlrd":
    pathlib.Path(value("-o")).write_text(value("--cache-ratio") or value("--budget"))
elif name == "ekv-export":
    folder = pathlib.Path(value("-o"))
    folder.mkdir()
    (folder / "ratio").write_text(pathlib.Path(value("--jlrd")).read_text())
else:
    ratio = float((pathlib.Path(value("--compressed")) / "ratio").read_text())
    report = {"cache_ratio": ratio, "kv_rank": [round(ratio * 384 - 42)] * 30, "mean_kl": 0.1 / ratio,
              "ppl_compressed": 40 + 1 / ratio, "ppl_original": 40.0, "top1_agreement": 1 - 0.1 / ratio,
              "mean_layer_error": 0.1, "windows": int(value("--max-windows")),
              "held_out_from": value("--held-out-from"), "text": value("--text")}
    pathlib.Path(value("-o")).write_text(json.dumps(report))
'''


def test_fit_script():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bin_dir, out = tmp / "bin", tmp / "out"
        bin_dir.mkdir()
        out.mkdir()
        for name in ("ekv-jlrd", "ekv-export", "ekv-check"):
            (bin_dir / name).write_text(FAKE_TOOL)
            os.chmod(bin_dir / name, 0o755)
        with h5py.File(out / "calib.h5", "w") as f:
            f.attrs["kv_heads"], f.attrs["head_dim"] = 3, 64
        (out / "rope-elite-l1.h5").write_text("")
        preset = tmp / "p.toml"
        preset.write_text("[jlrd]\nr = 7\ncache-ratio = 0.25\n")
        command = [sys.executable, ROOT / "scripts/fit-cache.py", "--out", out, "--preset", preset, "--bin", bin_dir,
                   "--model", "m.gguf", "--corpora", tmp, "--kl", "0.5"]
        run = subprocess.run(command, capture_output=True, text=True)
        check(run.returncode == 0, f"fit-cache.py failed: {run.stderr}")
        result = json.loads((out / "fit-kl0.5.json").read_text())
        chosen = result["chosen"]
        # r = 7 of 3 KV heads caches 42 of 384; rank 35 is the first with ratio >= 0.2.
        check(0.2 <= chosen["cache_ratio"] < 0.2 + 4 / 384, f"chose {chosen['cache_ratio']}, the plant says 0.2")
        check(chosen["make"] in run.stdout and "final: cache_ratio=" in run.stdout, f"no make command: {run.stdout}")
        check(chosen["kv_rank"] == round(chosen["cache_ratio"] * 384 - 42) and "kv_rank=" in run.stdout,
              f"the latent is the mean of the report's per-layer ranks: {chosen}")
        check(f"make CACHE={chosen['cache_ratio']:.6f}" == chosen["make"], f"{chosen['make']}")
        failing = [p for p in result["probes"] if not p["passes"]]
        check(failing and chosen["cache_ratio"] - max(p["cache_ratio"] for p in failing) <= 4 / 384 + 1e-9,
              f"the choice is not within the tolerance of a failing probe: {result['probes']}")
        calls = (bin_dir / "calls.log").read_text().splitlines()
        compares = [c for c in calls if c.startswith("ekv-check")]
        check(all("--held-out-from " + str(out / "calib.h5") in c and "calib.txt" in c for c in compares),
              f"a probe measured elsewhere than the calibration corpus's held-out windows: {compares[0]}")
        check(all("--config " + str(preset) in c for c in calls if c.startswith("ekv-jlrd")), "the preset was dropped")
        leftovers = [p.name for p in (out / "fit").iterdir() if p.is_dir() and p.name != "logs"]
        check(not leftovers, f"exports left behind: {leftovers}")
        check("Chosen:" in (out / "fit-kl0.5.md").read_text(), "the report does not say what it chose")
        # A second fit with a target on the same grid re-uses the probes it shares.
        before = len(calls)
        run = subprocess.run(command[:-1] + ["0.5"], capture_output=True, text=True)
        check(run.returncode == 0, run.stderr)
        check(len((bin_dir / "calls.log").read_text().splitlines()) == before, "measured probes were measured again")
        # A target nothing reaches: an error that says so, and the report.
        run = subprocess.run(command[:-1] + ["0.05"], capture_output=True, text=True)
        check(run.returncode != 0 and "no ratio" in run.stderr, f"unreachable target: {run.returncode} {run.stderr}")


def test_curve_rules():
    curve = load("cache-curve")
    check([curve.elite_chunks(f, 3 / 8, 64) for f in (0.1, 0.25, 0.5, 0.75)] == [2, 6, 12, 16],
          "r = 3/8 of the cache, clamped to 16")
    check(curve.elite_chunks(0.1, 1 / 4, 64) == 2 and curve.elite_chunks(0.05, 1 / 4, 64) == 1, "r at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        uniform, budget = pathlib.Path(tmp) / "u.toml", pathlib.Path(tmp) / "b.toml"
        uniform.write_text("[jlrd]\nr = 7\ncache-ratio = 0.25\n")
        budget.write_text("[jlrd]\nr = 6\nbudget = 0.25\n")
        check(curve.jlrd_options("pipeline", uniform, 0.4, 9)[-4:] == ["--r", 9, "--cache-ratio", 0.4], "uniform")
        check(curve.jlrd_options("pipeline", budget, 0.4, 9)[-2:] == ["--budget", 0.4], "a budget preset's kind")
        paper = curve.jlrd_options("paper", budget, 0.4, 4)
        check("--config" not in paper and "weight" in paper and paper[-2:] == ["--cache-ratio", 0.4], f"{paper}")
    # The ratios recovered are some of the curve's, and only with --recover; checked before any work.
    curve_command = [sys.executable, str(ROOT / "scripts" / "cache-curve.py"), "--out", "/nonexistent", "--preset",
                     "p.toml", "--bin", "b", "--model", "m", "--corpora", "c", "--ratios", "0.1,0.5"]
    for extra, message in ((["--recover", "--recover-ratios", "0.3"], "none of [0.3] is among --ratios"),
                           (["--recover-ratios", "0.5"], "needs --recover")):
        run = subprocess.run(curve_command + extra, capture_output=True, text=True)
        check(run.returncode != 0 and message in run.stderr, f"{extra}: {run.returncode} {run.stderr}")


if __name__ == "__main__":
    test_bisection()
    test_fit_script()
    test_curve_rules()
    print("ok")
