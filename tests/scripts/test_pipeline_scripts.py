#!/usr/bin/env python3
"""The pipeline's own scripts: make-report.py turns planted pipeline outputs into a report that
carries their numbers, figures and commands (and refuses a folder without fidelity.json), and the
Makefile passes a preset and its overrides to the right steps (dry runs, no tool is started).
"""
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def planted_out(folder):
    layers = 4
    fidelity = {
        "model": "m.gguf", "compressed": "out/model-elitekv", "text": "eval.txt", "windows": 2, "window": 64,
        "scored_tokens": 126, "ppl_original": 12.3456, "ppl_compressed": 23.4567, "mean_kl": 0.4321,
        "top1_agreement": 0.8766, "mean_layer_error": 0.1234, "cache_ratio": 0.25, "r": 2,
        "cache_elements_per_token": {"original": 1000, "compressed": 250},
        "cache_bytes_per_token_fp16": {"original": 2000, "compressed": 500},
        "layer_error": [0.1, 0.2, 0.15, 0.05][:layers], "kv_rank": [10, 20, 30, 40][:layers],
    }
    (folder / "fidelity.json").write_text(json.dumps(fidelity))
    (folder / "decode.txt").write_text("table\nfinal: decode steps=8 paths=3 max_rel_diff=1e-06 tolerance=0.0001 agree\n")
    (folder / "logs").mkdir()
    (folder / "logs" / "jlrd.log").write_text("ekv-jlrd 0.1.0 (git abc): ekv-jlrd --r 2 -o out/jlrd.h5\nprogress\n")


def test_report():
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        planted_out(out)
        preset = out / "p.toml"
        preset.write_text("[jlrd]\nr = 2\n")
        run = subprocess.run([sys.executable, ROOT / "scripts/make-report.py", out, "--preset", preset],
                             capture_output=True, text=True)
        check(run.returncode == 0, f"make-report.py failed: {run.stderr}")
        report = (out / "report.md").read_text()
        for expected in ["| perplexity | 12.35 | 23.46 |", "0.432", "87.7 %", "| 1000 | 250 |",
                         "max_rel_diff=1e-06", "`ekv-jlrd --r 2 -o out/jlrd.h5`", "r = 2", "report-layers.png"]:
            check(expected in report, f"report lacks {expected!r}")
        check("rope-elite.png" not in report, "report shows a heat map that does not exist")
        check("| recovered" not in report, "a recovered column without a recovered model")
        recovered = json.loads((out / "fidelity.json").read_text())
        recovered.update(ppl_compressed=15.4321, mean_kl=0.1111, top1_agreement=0.9012)
        (out / "fidelity-uptrained.json").write_text(json.dumps(recovered))
        subprocess.run([sys.executable, ROOT / "scripts/make-report.py", out, "--preset", preset], check=True,
                       capture_output=True)
        report = (out / "report.md").read_text()
        for expected in ["| recovered, short (main job) |", "| 12.35 | 23.46 | 15.43 |", "| 0.432 | 0.111 |",
                         "| 87.7 % | 90.1 % |"]:
            check(expected in report, f"report with a recovered model lacks {expected!r}")
        check((out / "report-layers.png").stat().st_size > 1000, "the per-layer figure is missing or empty")
        (out / "fidelity.json").unlink()
        run = subprocess.run([sys.executable, ROOT / "scripts/make-report.py", out, "--preset", preset],
                             capture_output=True, text=True)
        check(run.returncode != 0 and "fidelity.json" in run.stderr, "a missing fidelity.json must be refused")


def make_dry_run(*arguments):
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(["make", "-n", "-C", ROOT, f"OUT={tmp}/out", *arguments], capture_output=True, text=True)
        return run.returncode, run.stdout + run.stderr


def test_makefile():
    code, text = make_dry_run()
    check(code == 0, f"make -n failed: {text}")
    steps = [line.split()[0].rsplit("/", 1)[-1] for line in text.splitlines() if "/apps/ekv-" in line.split(" ")[0]]
    check(steps[:2] == ["ekv-info", "ekv-check"] and "ekv-calibrate" in steps and steps.index("ekv-calibrate") <
          steps.index("ekv-select-rope") < steps.index("ekv-jlrd") < steps.index("ekv-export"), f"step order: {steps}")
    check("ekv-uptrain" in steps and steps.index("ekv-export") < steps.index("ekv-uptrain"),
          f"the main job recovers the export: {steps}")
    commands = text.replace("\\\n", " ").splitlines()  # a recipe's continued lines as one command
    uptrain = next(line for line in commands if "/apps/ekv-uptrain" in line)
    check("--config configs/smollm2-135m-25.toml" in uptrain and "train.txt" in uptrain and "eval.txt" not in uptrain,
          f"ekv-uptrain reads the preset and the training corpus, never the evaluation text: {uptrain}")
    jlrd = next(line for line in text.splitlines() if "/apps/ekv-jlrd" in line)
    check("--config configs/smollm2-135m-25.toml" in jlrd and "--r" not in jlrd.split("--config")[1].split("-o")[0],
          f"the preset alone drives ekv-jlrd: {jlrd}")
    code, text = make_dry_run("R=8", "CACHE=0.4", "PRESET=configs/smollm2-135m-50.toml")
    jlrd = next(line for line in text.splitlines() if "/apps/ekv-jlrd" in line)
    check("--config configs/smollm2-135m-50.toml --r 8 --cache-ratio 0.4" in jlrd, f"overrides follow the preset: {jlrd}")
    code, text = make_dry_run("CACHE=0.4", "PRESET=configs/llama2-7b-shape-25.toml")
    jlrd = next(line for line in text.splitlines() if "/apps/ekv-jlrd" in line)
    check("--config configs/llama2-7b-shape-25.toml --budget 0.4" in jlrd, f"a budget preset's CACHE= is a budget: {jlrd}")
    # ekv-jlrd takes one kind of target: BUDGET= on a preset with one ratio for every layer is refused
    # by make before any step runs, naming what to use instead.
    code, text = make_dry_run("BUDGET=0.4", "PRESET=configs/smollm2-135m-50.toml")
    check(code != 0 and "use CACHE=0.4" in text, f"BUDGET= on a cache-ratio preset: exit {code}: {text[-300:]}")
    code, text = make_dry_run("PRESET=configs/none.toml")
    check(code != 0 and "no such preset" in text, f"a missing preset must stop make: {text}")
    # Choosing a cache: make fit needs its KL, measures with the preset; make curve recovers on train.txt.
    code, text = make_dry_run("fit")
    check(code != 0 and "make fit needs KL=x" in text, f"make fit without KL: exit {code}: {text[-300:]}")
    code, text = make_dry_run("fit", "KL=0.3", "PRESET=configs/smollm2-135m-50.toml")
    fit = next((line for line in text.splitlines() if "fit-cache.py" in line), "")
    check(code == 0 and "--kl 0.3" in fit and "--preset configs/smollm2-135m-50.toml" in fit, f"make fit: {fit}")
    code, text = make_dry_run("curve", "CURVE_RATIOS=0.1,0.5", "CURVE_RECOVER=0.5")
    curve = next((line for line in text.splitlines() if "cache-curve.py" in line), "")
    check(code == 0 and "--recover --train-text" in curve and "train.txt" in curve and "--ratios 0.1,0.5" in text
          and "--recover-ratios 0.5" in text, f"make curve: {text[-500:]}")


if __name__ == "__main__":
    test_report()
    test_makefile()
    print("ok")
