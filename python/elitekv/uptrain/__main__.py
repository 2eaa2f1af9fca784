"""ekv-uptrain command line: python -m elitekv.uptrain (the build puts an ekv-uptrain wrapper
beside the C++ tools)."""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# OpenMP threads that spin-wait between parallel regions halve the step when another process
# shares the cores (docs/results.md, "Recovery speed"); libgomp reads this when torch loads it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from . import allocator, checkpoint, corpus, distributed, export_writer, models, precision, progress, provenance, \
    stages  # noqa: E402
from .metrics import heldout_fidelity  # noqa: E402
from .preset import preset_defaults  # noqa: E402
from .progress import log  # noqa: E402

DESCRIPTION = """\
Recovers an ekv-export model by distillation from the original it was made from (the fourth
EliteKV step). Stage 1 (layer-local, the CPU path): layer after layer, the compressed attention
is trained to reproduce the original attention block on the inputs that the recovered layers
below produce (normalized MSE, best held-out step kept). Stage 2 (end to end): KL(original ||
compressed) on next-token distributions, compressed attention parameters only, AdamW with
warm-up + cosine, checkpoints and --resume. The output is an export of the same format
(decode-pack.h5 rewritten), so ekv-check compare/decode and transformers read it unchanged.
Text: --text is the training corpus (never the evaluation text); its first windows in a seeded
order are held out for validation. Several processes (CPUs or GPUs, one machine or many): start it
under torchrun, data-parallel with DDP (gloo on CPUs, NCCL on GPUs); see docs/uptrain.md."""

EXAMPLE = """\
example:
  ekv-uptrain --export out/model-elitekv --model model.gguf --text train.txt \\
      --layer-steps 200 --steps 300 -o out/model-uptrained
  ekv-check compare --model model.gguf --compressed out/model-uptrained --text eval.txt -o fidelity.json
  torchrun --standalone --nproc_per_node 2 --no_python build/apps/ekv-uptrain \
      --export out/model-elitekv --model model.gguf --text train.txt --steps 300 -o out/model-uptrained
see also: ekv-export (makes the export), ekv-check compare|decode (verifies the output)"""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="ekv-uptrain", description=DESCRIPTION, epilog=EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="", help="preset file (TOML, configs/): options from its [uptrain] section")
    p.add_argument("--config-section", default="uptrain", help="the preset section to read (default uptrain)")
    p.add_argument("--export", required=True, help="the ekv-export folder to recover")
    p.add_argument("--model", "-m", required=True, help="the original model the export was made from (GGUF or HF)")
    p.add_argument("--text", required=True, help="the training corpus (a text file; not the evaluation text)")
    p.add_argument("--output", "-o", required=True, help="output export folder (replaced atomically)")
    p.add_argument("--tools", default=os.environ.get("EKV_TOOLS", ""),
                   help="folder of the ekv tools (ekv-info, ekv-convert, ekv-export); default $EKV_TOOLS")
    p.add_argument("--cache", default=os.environ.get("EKV_CACHE", os.path.expanduser("~/.cache/ekv")),
                   help="where a GGUF original's f32 HF copy (the teacher) is kept; default $EKV_CACHE")
    p.add_argument("--window", type=int, default=512, help="tokens per training window (default 512)")
    p.add_argument("--val-windows", type=int, default=4, help="held-out windows of --text (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the window order and sampling (default 0)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: the cores divided among torchrun's local processes)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (default auto: a GPU when torch sees one)")
    p.add_argument("--precision", default="auto", choices=precision.CHOICES,
                   help="frozen weights and matrix products in bf16 or fp32 (default auto: bf16 where the GPU or "
                        "CPU has it natively, AVX-512 BF16 or AMX); trained weights and the loss stay fp32")
    p.add_argument("--train", default=",".join(p_.removesuffix("_proj") for p_ in models.ATTENTION_PARTS),
                   help="attention parts that train: any of q,k_rope,kv_a,k_b,v_b,o (default all)")
    s1 = p.add_argument_group("stage 1 (layer-local)")
    s1.add_argument("--layer-windows", type=int, default=32, help="training windows per layer (default 32)")
    s1.add_argument("--layer-steps", type=int, default=100, help="Adam steps per layer, 0 skips stage 1 (default 100)")
    s1.add_argument("--layer-batch", type=int, default=4, help="windows per step (default 4)")
    s1.add_argument("--layer-lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    s1.add_argument("--layer-eval-every", type=int, default=25, help="held-out check every N steps (default 25)")
    s2 = p.add_argument_group("stage 2 (end-to-end KL)")
    s2.add_argument("--steps", type=int, default=0, help="optimizer steps, 0 skips stage 2 (default 0)")
    s2.add_argument("--windows", type=int, default=256, help="training windows (default 256)")
    s2.add_argument("--batch", type=int, default=2, help="windows per micro-batch (default 2)")
    s2.add_argument("--accum", type=int, default=4, help="micro-batches per step (default 4)")
    s2.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    s2.add_argument("--warmup", type=int, default=20, help="warm-up steps (default 20)")
    s2.add_argument("--eval-every", type=int, default=50, help="held-out KL every N steps (default 50)")
    s2.add_argument("--checkpoint-every", type=int, default=50, help="checkpoint every N steps (default 50)")
    s2.add_argument("--checkpoint", default="", help="checkpoint folder (default OUTPUT.ckpt)")
    s2.add_argument("--resume", action="store_true", help="continue from the checkpoint (same command)")
    p.set_defaults(**preset_defaults(p, argv))
    args = p.parse_args(argv)
    parts = [f"{part}_proj" for part in args.train.split(",")]
    bad = [part for part in parts if part not in models.ATTENTION_PARTS]
    if bad:
        p.error(f"--train: unknown part(s) {', '.join(b.removesuffix('_proj') for b in bad)}")
    args.parts = parts
    for name in ("window", "val_windows", "layer_windows", "layer_batch", "layer_eval_every", "windows", "batch",
                 "accum", "eval_every", "checkpoint_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("layer_steps", "steps", "warmup", "threads"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    for name in ("layer_lr", "lr"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not args.tools:
        p.error("--tools: where are the ekv tools? (the ekv-uptrain wrapper in the build sets $EKV_TOOLS)")
    if not Path(args.text).is_file():
        p.error(f"--text {args.text}: no such file")
    args.checkpoint = args.checkpoint or str(args.output) + ".ckpt"
    # The output folder is replaced and the checkpoint folder removed at the end: neither may be
    # or hold an input, and an existing output must be a folder an ekv tool wrote.
    inputs = {"--export": args.export, "--text": args.text, "--model": args.model}
    for option, folder in (("--output", args.output), ("--checkpoint", args.checkpoint)):
        resolved = Path(folder).resolve()
        for name, path in inputs.items():
            if resolved == Path(path).resolve() or resolved in Path(path).resolve().parents:
                p.error(f"{option} {folder}: holds the input {name} {path}; replacing or removing it would "
                        f"delete the input (write elsewhere)")
    # A place it cannot write is found now, not after the training it would throw away (by trying:
    # permission bits do not bind root, a read-only file system does).
    for option, folder in (("--output", args.output), ("--checkpoint", args.checkpoint)):
        parent = Path(folder).resolve().parent
        if not parent.is_dir():
            p.error(f"{option} {folder}: the folder {parent} does not exist")
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".ekv-uptrain-probe-", dir=parent))
        except OSError as error:
            p.error(f"{option} {folder}: cannot write in {parent}: {error.strerror}")
    output = Path(args.output)
    if output.is_dir() and any(output.iterdir()):
        try:
            ours = "ekv_source" in json.loads((output / "config.json").read_text())
        except (OSError, ValueError):
            ours = False
        if not ours:
            p.error(f"--output {args.output}: exists and is not a folder an ekv tool wrote (no config.json with "
                    f"ekv_source): refusing to replace it and everything in it")
        written = set(os.listdir(args.export)) if Path(args.export).is_dir() else set()
        written |= {"config.json", "model.safetensors", "decode-pack.h5"}
        foreign = sorted(e.name for e in output.iterdir() if e.name not in written and not e.name.endswith(".ekv-sha256"))
        if foreign:
            p.error(f"--output {args.output}: holds {foreign[0]}, which ekv-uptrain does not write: refusing to "
                    f"replace the folder (move it out, or write elsewhere)")
    return args


def settings_of(args):
    """What the result depends on: a resumed run must match these."""
    keys = ("window", "val_windows", "seed", "train", "precision", "layer_windows", "layer_steps", "layer_batch",
            "layer_lr", "layer_eval_every", "steps", "windows", "batch", "accum", "lr", "warmup", "eval_every")
    return {k: getattr(args, k) for k in keys}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    start = time.monotonic()
    allocator.keep_freed_memory()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("ekv-uptrain: --device cuda, but torch sees no CUDA device")
    world, device = distributed.join(torch.device(args.device))
    if not world.main:
        progress.silence()
    # First line, as every ekv tool: version, git sha, the command (the report quotes it).
    if world.main:
        print(f"ekv-uptrain {os.environ.get('EKV_VERSION', 'dev')} (git {provenance.git_sha()[:12]}): "
              f"{' '.join(['ekv-uptrain', *argv])}", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    threads = args.threads or max(1, (os.cpu_count() or 1) // world.local_size)
    torch.set_num_threads(threads)
    args.precision = precision.resolve(args.precision, device)
    settings = settings_of(args)
    log(f"{world.size} process{'es' if world.size > 1 else ''} on {device.type}, {threads} thread"
        f"{'s' if threads > 1 else ''} each, precision {args.precision}")

    fingerprint = models.require_chain(args.tools, args.export, args.model)
    # A checkpoint that cannot be resumed is refused before the models load.
    saved = checkpoint.load(args.checkpoint, settings) if args.resume else None
    if world.main:  # the others wait for its conversion of a GGUF original
        models.teacher_folder(args.tools, args.model, fingerprint, args.cache)
    world.barrier()
    teacher = models.load_teacher(models.teacher_folder(args.tools, args.model, fingerprint, args.cache)).to(device)
    student = models.load_student(args.export).to(device)
    train_count = max(args.layer_windows if args.layer_steps else 0, args.windows if args.steps else 0, 1)
    train_ids, val_ids = corpus.load_windows(args.text, Path(args.export) / "tokenizer.json", args.window,
                                             train_count, args.val_windows, args.seed)
    log(f"corpus {args.text}: {train_ids.shape[0]} training + {val_ids.shape[0]} held-out windows of {args.window}")
    attention = models.trainable_attention(student, models.ATTENTION_PARTS)
    trainable = models.trainable_attention(student, args.parts)
    precision.lower_frozen(teacher, args.precision)
    precision.lower_frozen(student, args.precision, attention)

    def fidelity():
        return heldout_fidelity(teacher, student, val_ids.to(device), args.batch,
                                lambda: precision.autocast(device, args.precision), world)

    summary = {"training_text": str(args.text), "heldout_windows": val_ids.shape[0], "window": args.window,
               "processes": world.size, "device": device.type, "threads_per_process": threads,
               "precision": args.precision, "torch": torch.__version__}
    summary["before"] = fidelity()
    log(f"held-out before: KL {summary['before']['kl']:.4f} top-1 {summary['before']['top1']:.3f}")
    # The weights each stage starts from, with their held-out KL: a stage that raised it is undone
    # at the end (a learning rate too high for the model diverges; the output is never worse than
    # what the tool was given, on held-out text).
    starts = [("the export given", summary["before"], checkpoint.snapshot(attention))]

    # A checkpoint holds either a finished stage 1 (extra "stage1"; stage 2 resumes from its own
    # step) or stage 1 up to a layer (extra "stage1_partial": it resumes at the next layer).
    partial = (saved["extra"] or {}).get("stage1_partial") if saved else None
    resuming = saved is not None and partial is None and args.steps > 0
    if resuming:
        log(f"stage 1: taken from the checkpoint in {args.checkpoint}")
        summary["stage1"] = (saved["extra"] or {}).get("stage1")
    elif args.layer_steps > 0:
        if partial is not None:
            checkpoint.restore_params(attention, saved["params"])
        summary["stage1"] = stages.stage1(student=student, teacher=teacher, attention=attention, train_ids=train_ids,
                                          val_ids=val_ids, args=args, settings=settings, world=world, device=device,
                                          partial=partial, fidelity=fidelity, before=summary["before"])
        if args.steps > 0:
            starts.append(("stage 1", summary["stage1"]["heldout"], checkpoint.snapshot(attention)))
    if args.steps > 0:
        summary["stage2"] = stages.stage2(
            student=student, teacher=teacher, attention=attention, trainable=trainable, train_ids=train_ids,
            val_ids=val_ids, args=args, settings=settings, world=world, device=device, resuming=resuming,
            stage1_summary=summary.get("stage1"),
            start_fidelity=(summary.get("stage1") or {}).get("heldout", summary["before"]), fidelity=fidelity)
    latest = (summary.get("stage2") or summary.get("stage1") or {}).get("heldout") or summary["before"]
    summary["kept"], latest, trained = stages.keep_best(starts, latest, attention=attention)
    if trained is not None:
        summary["trained"] = trained
    summary["after"] = latest
    summary["seconds"] = time.monotonic() - start
    if world.main:
        record = provenance.record(args.export, args.model, args.text, fingerprint, settings)
        record["summary"] = summary
        export_writer.write_export(args.export, args.output, attention, record, args.tools)
        # The output holds the result now; the checkpoint was for a kill before this line.
        shutil.rmtree(args.checkpoint, ignore_errors=True)
    distributed.leave(world)
    if not world.main:
        return 0
    after = summary["after"]
    print(f"final: export={args.output} heldout_kl_before={summary['before']['kl']:.5f} "
          f"heldout_kl_after={after['kl']:.5f} top1_after={after['top1']:.4f} "
          f"stage1_tokens_per_layer={(summary.get('stage1') or {}).get('tokens_per_layer', 0)} "
          f"stage2_tokens={summary.get('stage2', {}).get('tokens', 0)} kept={summary['kept'].replace(' ', '_')} "
          f"seconds={summary['seconds']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (models.ChainError, corpus.CorpusError, checkpoint.CheckpointError, FloatingPointError, OSError,
            ValueError) as error:
        print(f"ekv-uptrain: error: {error}", file=sys.stderr)
        sys.exit(1)
