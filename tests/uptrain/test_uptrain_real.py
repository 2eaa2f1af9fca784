"""ekv-uptrain on the default model (25 % cache export made here from a small calibration):
- a short end-to-end run lowers KL on held-out evaluation text (ekv-check compare) below the
  training-free export's, and its output passes ekv-check decode (decode pack rewritten);
- the same run under torchrun with 2 CPU processes (gloo, DDP) equals it (bounds below);
- a run killed after a checkpoint and resumed ends with the same loss, bit for bit, as an
  uninterrupted one;
- a diverging run (learning rate far too high) keeps the export's weights and says so;
- an export/original pair that does not chain, an empty corpus and a too-small corpus are refused.
Training text: the recovery corpus (train.txt); evaluation text only in ekv-check compare."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "peer"))
from peer_common import env_path, report, run, workdir  # noqa: E402

from elitekv.uptrain import distributed  # noqa: E402

model = env_path("EKV_DEFAULT_MODEL")
eval_text = env_path("EKV_EVAL_TEXT")
train_text = env_path("EKV_TRAIN_TEXT")
calib_text = env_path("EKV_CALIB_TEXT")
bin_dir = env_path("EKV_BIN")
io_tool = env_path("EKV_TEST_IO")
work = workdir("uptrain")
lines, failures = [], []


def tool(name):
    return os.path.join(bin_dir, name)


def path(name):
    return os.path.join(work, name)


def check(condition, message):
    (lines if condition else failures).append(message)


# The export: small calibration, r = 4 elite chunks, J-LRD at a 25 % budget.
run(tool("ekv-calibrate"), "--model", model, "--text", calib_text, "-S", "128", "-N", "8", "-o", path("calib.h5"),
    "--quiet")
run(tool("ekv-select-rope"), "--model", model, "--calib", path("calib.h5"), "--method", "elite", "--r-max", "4",
    "-o", path("rope.h5"), "--quiet")
run(tool("ekv-jlrd"), "--model", model, "--rope", path("rope.h5"), "--calib", path("calib.h5"), "--r", "4",
    "--svd", "whitened", "--budget", "0.25", "-o", path("jlrd.h5"), "--quiet")
run(tool("ekv-export"), "--model", model, "--rope", path("rope.h5"), "--jlrd", path("jlrd.h5"), "-o",
    path("export"), "--quiet")

SHORT = ["--text", train_text, "--cache", path("cache"), "--window", "128", "--val-windows", "2", "--layer-steps", "0",
         "--windows", "16", "--batch", "1", "--accum", "2", "--lr", "1e-4", "--warmup", "1", "--eval-every", "4",
         "--threads", "2"]


def uptrain(output, *extra, export=None, text=None):
    command = [tool("ekv-uptrain"), "--export", export or path("export"), "--model", model, "-o", output, *SHORT,
               *extra]
    if text:
        command[command.index("--text") + 1] = text
    return subprocess.run(command, capture_output=True, text=True)


def last_line(result):
    return (result.stderr.strip().splitlines() or [""])[-1]


def final_loss(folder):
    config = json.load(open(os.path.join(folder, "config.json")))
    return config["ekv_uptrain"]["summary"]["stage2"]["history"][-1]["loss"]


def compare(folder, name):
    run(tool("ekv-check"), "compare", "--model", model, "--compressed", folder, "--text", eval_text, "--window", "256",
        "--max-windows", "2", "-o", path(name), "--quiet")
    return json.load(open(path(name)))


# 1. A short run lowers held-out KL on the evaluation text, and the output verifies.
result = uptrain(path("short"), "--steps", "4", "--checkpoint-every", "2")
check(result.returncode == 0, f"short run exits 0 ({result.stderr[-400:] if result.returncode else ''})")
if result.returncode == 0:
    before, after = compare(path("export"), "before.json"), compare(path("short"), "after.json")
    check(after["mean_kl"] < before["mean_kl"],
          f"held-out KL on evaluation text {before['mean_kl']:.4f} -> {after['mean_kl']:.4f} after 4 steps")
    decode = subprocess.run([tool("ekv-check"), "decode", "--compressed", path("short"), "--text", eval_text,
                             "--steps", "8"], capture_output=True, text=True)
    check(decode.returncode == 0 and "agree" in decode.stdout, "ekv-check decode (pack rewritten) agrees")
    check(not os.path.exists(path("short.ckpt")) and not os.path.exists(path("short.partial")),
          "no checkpoint or staging folder left after success")
    # The peer: transformers loads the output (trust_remote_code) and agrees with ekv's forward of it.
    run(io_tool, "tokenize", model, eval_text, path("tokens.safetensors"))
    ids = load_file(path("tokens.safetensors"))["tokens"].reshape(-1)[:128].astype(np.int32).reshape(1, 128)
    save_file({"tokens": ids}, path("batch.safetensors"))
    run(io_tool, "logits", path("short"), path("batch.safetensors"), path("logits.safetensors"))
    ours = load_file(path("logits.safetensors"))["logits"]
    peer = AutoModelForCausalLM.from_pretrained(path("short"), trust_remote_code=True, torch_dtype=torch.float32)
    with torch.no_grad():
        theirs = peer(torch.from_numpy(ids.astype(np.int64))).logits.reshape(128, -1).numpy()
    relative = float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))
    check(relative <= 1e-4, f"transformers vs ekv logits of the recovered export: {relative:.2e} (bound 1e-4)")

    # 2. torchrun, 2 processes on the CPU (gloo, DDP; one micro-batch each, one thread each): the
    # same run as one process: losses and gradient norms within 1e-4, weights within 1e-3 of what
    # training moved them.
    command = [*distributed.torchrun(2), "--no_python", tool("ekv-uptrain"), "--export", path("export"), "--model", model, "-o", path("ddp"), *SHORT,
               "--threads", "1", "--steps", "4", "--checkpoint-every", "2"]
    ddp = subprocess.run(command, capture_output=True, text=True)
    check(ddp.returncode == 0 and "2 processes on cpu" in ddp.stderr,
          f"ekv-uptrain under torchrun --nproc_per_node 2 exits 0 ({ddp.stderr[-600:] if ddp.returncode else 'ok'})")
    if ddp.returncode == 0:
        one, two = (json.load(open(os.path.join(folder, "config.json")))["ekv_uptrain"]["summary"]
                    for folder in (path("short"), path("ddp")))
        worst = max(abs(a[key] - b[key]) / abs(a[key]) for a, b in zip(one["stage2"]["history"][1:],
                                                                      two["stage2"]["history"][1:])
                    for key in ("loss", "gradient_norm"))
        given, ours, theirs = (load_file(path(f"{name}/model.safetensors")) for name in ("export", "short", "ddp"))
        trained = [name for name in ours if "self_attn" in name]
        moved = max(float(np.abs(ours[name] - given[name]).max()) for name in trained)
        weights = max(float(np.abs(ours[name] - theirs[name]).max()) for name in trained)
        check(two["processes"] == 2 and worst <= 1e-4 and 0 < moved and weights <= 1e-3 * moved,
              f"2 processes vs 1: losses and gradient norms within {worst:.1e} (bound 1e-4), weights within "
              f"{weights:.1e} while training moved them by up to {moved:.1e} (bound 1e-3 of that)")

    # 3. Kill after the first checkpoint, resume: the same final loss as the uninterrupted run.
    command = [tool("ekv-uptrain"), "--export", path("export"), "--model", model, "-o", path("killed"), *SHORT,
               "--steps", "4", "--checkpoint-every", "2"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = path("killed.ckpt/checkpoint.pt")
    deadline = time.time() + 600
    while time.time() < deadline and child.poll() is None:
        if os.path.exists(checkpoint) and torch.load(checkpoint)["step"] >= 2:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    check(not os.path.exists(path("killed")), "a killed run leaves no output folder")
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True)
    check(resumed.returncode == 0 and "resumed at step 2/4" in resumed.stderr,
          f"--resume continues at step 2 ({resumed.stderr[-300:] if resumed.returncode else 'ok'})")
    if resumed.returncode == 0:
        check(final_loss(path("killed")) == final_loss(path("short")),
              f"resumed final loss {final_loss(path('killed'))!r} == uninterrupted {final_loss(path('short'))!r}")

# 4. A learning rate far too high raises the held-out KL: the output keeps the export's weights
# (it is never worse on held-out text than what was given) and says so.
diverged = uptrain(path("diverged"), "--steps", "2", "--lr", "0.05")
final = [line for line in diverged.stdout.splitlines() if line.startswith("final:")]
check(diverged.returncode == 0 and final and "kept=the_export_given" in final[-1],
      f"a diverging run keeps the given weights: {final[-1] if final else diverged.stderr[-300:]}")
if diverged.returncode == 0:
    given, kept = load_file(path("export/model.safetensors")), load_file(path("diverged/model.safetensors"))
    same = all(np.array_equal(given[name], kept[name]) for name in given if "self_attn" in name)
    check(same, "the diverged run's attention weights are the export's, bit for bit")
    summary = json.load(open(path("diverged/config.json")))["ekv_uptrain"]["summary"]
    check(summary["trained"]["kl"] > summary["before"]["kl"] == summary["after"]["kl"],
          f"the summary keeps the trained KL ({summary['trained']['kl']:.3f}) beside the kept one")

# 5. Refusals.
os.makedirs(path("other"))
config = json.load(open(path("export/config.json")))
config["ekv_source"]["fingerprint"] = "0" * 64
for name in os.listdir(path("export")):
    if name != "config.json":
        os.symlink(path(f"export/{name}"), path(f"other/{name}"))
json.dump(config, open(path("other/config.json"), "w"))
refused = uptrain(path("never"), "--steps", "1", export=path("other"))
check(refused.returncode == 1 and "was not made from this model" in refused.stderr,
      f"an export/original pair that does not chain is refused: {last_line(refused)}")
open(path("empty.txt"), "w").close()
refused = uptrain(path("never"), "--steps", "1", text=path("empty.txt"))
check(refused.returncode == 1 and "empty" in refused.stderr, f"an empty corpus is refused: {last_line(refused)}")
with open(path("small.txt"), "w") as f:
    f.write("A small corpus of a few words.\n" * 40)
refused = uptrain(path("never"), "--steps", "1", text=path("small.txt"))
check(refused.returncode == 1 and "too small" in refused.stderr,
      f"a too-small corpus is refused: {last_line(refused)}")
# Issue 33: these printed Python tracebacks. Each is now one line naming the file or field.
def broken_export(name, drop=None, edit=None):
    os.makedirs(path(name))
    for entry in os.listdir(path("export")):
        if entry not in ("config.json", drop):
            os.symlink(path(f"export/{entry}"), path(f"{name}/{entry}"))
    config = json.load(open(path("export/config.json")))
    if edit:
        edit(config)
    json.dump(config, open(path(f"{name}/config.json"), "w"))
    return path(name)


cases = [
    ("an export without tokenizer.json", broken_export("no-tokenizer", drop="tokenizer.json"), "tokenizer.json: no such file"),
    ("an export without model.safetensors", broken_export("no-weights", drop="model.safetensors"), "model.safetensors: no such file"),
    ("a config.json without hidden_size", broken_export("no-hidden", edit=lambda c: c.pop("hidden_size")), "hidden_size is missing"),
    ("a kv-rank list one short", broken_export("short-ranks", edit=lambda c: c["elitekv_kv_rank"].pop()), "one entry per layer"),
]
for what, export, expected in cases:
    refused = uptrain(path("never"), "--steps", "1", export=export)
    check(refused.returncode == 1 and expected in refused.stderr and "Traceback" not in refused.stderr,
          f"{what} is refused in one line: {last_line(refused)}")
refused = uptrain("/proc/ekv-uptrain-output", "--steps", "1")
check(refused.returncode == 2 and "cannot write in /proc" in refused.stderr and "Traceback" not in refused.stderr,
      f"an output where nothing can be written is refused before work: {last_line(refused)}")
os.makedirs(path("truncated.ckpt"))
torch.save({"step": 1, "params": {"w": torch.zeros(4096)}}, path("truncated.ckpt/checkpoint.pt"))
os.truncate(path("truncated.ckpt/checkpoint.pt"), 2000)
refused = uptrain(path("never"), "--steps", "1", "--checkpoint", path("truncated.ckpt"), "--resume")
check(refused.returncode == 1 and "truncated or damaged" in refused.stderr and "Traceback" not in refused.stderr,
      f"a truncated checkpoint is refused in one line: {last_line(refused)}")
check(not os.path.exists(path("never")), "refused runs write no output")

shutil.rmtree(work, ignore_errors=True)
report(lines, failures)
