#!/usr/bin/env python3
"""Choosing a cache (`make fit`, `make curve`): the bisection finds the smallest passing point of a
planted KL curve within its step; fit-cache.py, run against stand-in tools whose KL is a planted
function of the cache ratio, picks the ratio the plant says, measures on the calibration corpus's
held-out windows, leaves no export behind and re-uses its probes on a second run; by default r
grows with the ratio (free-layout probes) and the choice is measured again in the preset's engine
layout; the curve's r follows the ratio and a budget preset keeps its kind. The real tools' numbers: docs/results.md."""
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


# Stand-ins for ekv-select-rope, ekv-jlrd, ekv-export and ekv-check compare: the ratio and the
# selection travel through the files, and compare reports KL = 0.1 / ratio (so KL <= 0.5 from 20 %
# of the cache on), 0.05 more for a selection in llama.cpp's layout.
FAKE_TOOL = r'''#!/usr/bin/env python3
import json, pathlib, sys
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1] if flag in args else None
log = pathlib.Path(__file__).parent / "calls.log"
with open(log, "a") as f:
    f.write(pathlib.Path(__file__).name + " " + " ".join(args) + "\n")
name = pathlib.Path(__file__).name
if name == "ekv-select-rope":
    pathlib.Path(value("-o")).write_text(value("--layout") or "llama.cpp")
elif name == "ekv-jlrd":
    layout = pathlib.Path(value("--rope")).read_text()
    pathlib.Path(value("-o")).write_text((value("--cache-ratio") or value("--budget")) + " " + layout)
elif name == "ekv-export":
    folder = pathlib.Path(value("-o"))
    folder.mkdir()
    (folder / "ratio").write_text(pathlib.Path(value("--jlrd")).read_text())
else:
    ratio, layout = (pathlib.Path(value("--compressed")) / "ratio").read_text().split()
    ratio = float(ratio)
    kl = 0.1 / ratio + (0.05 if layout == "llama.cpp" else 0)
    report = {"cache_ratio": ratio, "kv_rank": [round(ratio * 384 - 42)] * 30, "mean_kl": kl,
              "ppl_compressed": 40 + 1 / ratio, "ppl_original": 40.0, "top1_agreement": 1 - kl,
              "mean_layer_error": 0.1, "windows": int(value("--max-windows")),
              "held_out_from": value("--held-out-from"), "text": value("--text")}
    pathlib.Path(value("-o")).write_text(json.dumps(report))
'''


def stand_in_pipeline(tmp, preset_text):
    """A pipeline folder (calib.h5 of 3 KV heads x 64, the preset's selection) and the stand-in tools."""
    bin_dir, out = tmp / "bin", tmp / "out"
    bin_dir.mkdir()
    out.mkdir()
    for name in ("ekv-select-rope", "ekv-jlrd", "ekv-export", "ekv-check"):
        (bin_dir / name).write_text(FAKE_TOOL)
        os.chmod(bin_dir / name, 0o755)
    with h5py.File(out / "calib.h5", "w") as f:
        f.attrs["kv_heads"], f.attrs["head_dim"] = 3, 64
    (out / "rope-elite-l1.h5").write_text("preset")
    preset = tmp / "p.toml"
    preset.write_text(preset_text)
    return bin_dir, out, preset


def test_fit_script():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bin_dir, out, preset = stand_in_pipeline(tmp, "[jlrd]\nr = 7\ncache-ratio = 0.25\n")
        command = [sys.executable, ROOT / "scripts/fit-cache.py", "--out", out, "--preset", preset, "--bin", bin_dir,
                   "--model", "m.gguf", "--corpora", tmp, "--r-rule", "preset", "--kl", "0.5"]
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


def test_fit_grows_r():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        bin_dir, out, preset = stand_in_pipeline(
            tmp, '[select-rope]\nlayout = "llama.cpp"\nr-max = 7\n[jlrd]\nr = 7\ncache-ratio = 0.25\n')
        command = [sys.executable, ROOT / "scripts/fit-cache.py", "--out", out, "--preset", preset, "--bin", bin_dir,
                   "--model", "m.gguf", "--corpora", tmp, "--kl", "0.5"]
        run = subprocess.run(command, capture_output=True, text=True)
        check(run.returncode == 0, f"fit-cache.py failed: {run.stderr}")
        result = json.loads((out / "fit-kl0.5.json").read_text())
        chosen, layout = result["chosen"], result["layout_check"]
        # KL = 0.1 / ratio: 20 % is the first passing point of the 1 % grid; r = 3/8 of 0.2 x 64 = 4.8 -> 5.
        check(chosen["cache_ratio"] == 0.2 and chosen["r"] == 5 and chosen["make"] == "make R=5 CACHE=0.2",
              f"chose {chosen}")
        calls = (bin_dir / "calls.log").read_text().splitlines()
        selections = [c for c in calls if c.startswith("ekv-select-rope")]
        check(len(selections) == 2 and "--layout free --r-max 16" in selections[0]
              and "--r-max 5" in selections[1] and "--layout" not in selections[1],
              f"one free selection for every probe, one in the preset's layout at the chosen r: {selections}")
        for c in (c.split() for c in calls if c.startswith("ekv-jlrd")):
            ratio, r = float(c[c.index("--cache-ratio") + 1]), int(c[c.index("--r") + 1])
            check(r == max(1, min(16, round(3 / 8 * ratio * 64))), f"r {r} does not follow the ratio {ratio}")
        # The plant's llama.cpp layout costs 0.05 more: the choice misses there, and the report says so.
        check(layout["layout"] == "llama.cpp" and layout["r"] == 5 and abs(layout["kl"] - 0.55) < 1e-9
              and not layout["passes"], f"the layout check: {layout}")
        check("misses the target there" in (out / "fit-kl0.5.md").read_text(), "the report hides the layout's miss")
        check("llama.cpp_kl=0.55000" in run.stdout, run.stdout)
        # Without the check: no second selection, and the report says it was not measured.
        run = subprocess.run(command[:-1] + ["0.6", "--no-layout-check"], capture_output=True, text=True)
        check(run.returncode == 0 and json.loads((out / "fit-kl0.6.json").read_text())["layout_check"] is None,
              run.stderr)
        check("Not measured in the preset's own llama.cpp layout" in (out / "fit-kl0.6.md").read_text(),
              "the report does not say the layout went unmeasured")
        # KL 0.12 needs 84 %: r = 16, more than llama.cpp's 32 distinct slots hold for 3 KV heads (r <= 10).
        run = subprocess.run(command[:-1] + ["0.12"], capture_output=True, text=True)
        result = json.loads((out / "fit-kl0.12.json").read_text())
        check(run.returncode == 0 and result["chosen"]["r"] == 16 and "r = 10" in result["layout_check"]["unavailable"],
              f"{run.stderr} {result['layout_check']}")
        check(sum(c.startswith("ekv-select-rope") for c in (bin_dir / "calls.log").read_text().splitlines()) == 2,
              "a selection the layout cannot hold was attempted")
        check("free-layout preset" in (out / "fit-kl0.12.md").read_text(), "the report hides that r needs the free layout")


def test_curve_rules():
    curve, points = load("cache-curve"), load("cache_points")
    check([points.elite_chunks(f, 3 / 8, 64) for f in (0.1, 0.25, 0.5, 0.75)] == [2, 6, 12, 16],
          "r = 3/8 of the cache, clamped to 16")
    check(points.elite_chunks(0.1, 1 / 4, 64) == 2 and points.elite_chunks(0.05, 1 / 4, 64) == 1, "r at least 1")
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
                           (["--recover-ratios", "0.5"], "needs --recover"),
                           (["--paper-ratios", "0.3"], "[0.3] not among --ratios")):
        run = subprocess.run(curve_command + extra, capture_output=True, text=True)
        check(run.returncode != 0 and message in run.stderr, f"{extra}: {run.returncode} {run.stderr}")


if __name__ == "__main__":
    test_bisection()
    test_fit_script()
    test_fit_grows_r()
    test_curve_rules()
    print("ok")
