"""The two stages of a recovery and the rule that picks the weights kept, as named steps of
ekv-uptrain's main (docs/uptrain.md). Each stage returns its summary; each trains the student's
attention in place.

The keep-best rule is named apart from the training losses: stage 1 trains on a block-output MSE,
stage 2 on KL over training windows, and both are judged by KEEP_BEST_METRIC on held-out windows,
so changing a loss does not silently change which weights an export keeps."""
import time

from . import checkpoint, distill, layer_local
from .progress import format_seconds, log

# What the kept weights minimise: the held-out KL(original || compressed) of next-token
# distributions (metrics.heldout_fidelity's "kl").
KEEP_BEST_METRIC = "kl"


def stage1(*, student, teacher, attention, train_ids, val_ids, args, settings, world, device, partial, fidelity,
           before):
    """Layer-local recovery, layer after layer; `partial`: a checkpoint's state to resume from;
    `before`: the held-out fidelity it starts from (for the log line)."""
    t = time.monotonic()
    options = layer_local.LayerLocalOptions(args.layer_steps, args.layer_batch, args.layer_lr,
                                            max(1, args.layer_steps // 10), args.layer_eval_every, args.parts,
                                            args.precision)

    def layer_done(state):
        if world.main:
            checkpoint.save(args.checkpoint, 0, attention, None, settings, [], {"stage1_partial": state})

    records = layer_local.recover_layers(
        student, teacher, train_ids[:args.layer_windows].to(device), val_ids.to(device), options, args.seed,
        resume=partial, on_layer_done=layer_done, world=world)
    seconds, heldout = time.monotonic() - t, fidelity()
    log(f"stage 1: {format_seconds(seconds)}, held-out KL {before[KEEP_BEST_METRIC]:.4f} -> "
        f"{heldout[KEEP_BEST_METRIC]:.4f}")
    return {"layers": records, "seconds": seconds, "tokens_per_layer": args.layer_steps * args.layer_batch * args.window,
            "heldout": heldout}


def stage2(*, student, teacher, attention, trainable, train_ids, val_ids, args, settings, world, device, resuming,
           stage1_summary, start_fidelity, fidelity):
    """End-to-end KL distillation; starts from the stage-1 checkpoint unless `resuming` its own."""
    if not resuming and world.main:  # the stage-1 result is the checkpoint a resume starts from
        checkpoint.save(args.checkpoint, 0, attention, None, settings, [], {"stage1": stage1_summary})
    t = time.monotonic()
    options = distill.DistillOptions(args.steps, args.batch, args.accum, args.lr, args.warmup, args.eval_every,
                                     args.checkpoint_every, precision=args.precision)
    history = distill.distill(student, teacher, train_ids=train_ids[:args.windows].to(device), val_ids=val_ids,
                              params=trainable, saved=attention, options=options, seed=args.seed, device=device,
                              folder=args.checkpoint, settings=settings, resume=resuming,
                              extra={"stage1": stage1_summary},
                              initial_kl=None if resuming else start_fidelity[KEEP_BEST_METRIC], world=world)
    final = fidelity()
    history[-1]["heldout_kl"] = final[KEEP_BEST_METRIC]  # distill leaves the last step's to this pass
    return {"history": history, "seconds": time.monotonic() - t,
            "tokens": args.steps * args.batch * args.accum * args.window, "heldout": final}


def keep_best(starts, latest, *, attention):
    """The weights with the lowest held-out KEEP_BEST_METRIC among the trained ones (`latest`, the
    held-out fidelity of the weights in place) and the ones each stage started from (`starts`:
    (label, fidelity, snapshot)). Restores the snapshot when a start was better and returns
    (label kept, its fidelity, the trained fidelity when it was not kept, else None)."""
    label, best, weights = min(starts, key=lambda start: start[1][KEEP_BEST_METRIC])
    if best[KEEP_BEST_METRIC] < latest[KEEP_BEST_METRIC]:
        log(f"warning: training raised the held-out KL to {latest[KEEP_BEST_METRIC]:.4f}; the output keeps the "
            f"weights of {label} (held-out KL {best[KEEP_BEST_METRIC]:.4f}). Lower --lr (or --layer-lr) for this "
            f"model.")
        checkpoint.restore_params(attention, weights)
        return label, best, latest
    return "trained", latest, None

