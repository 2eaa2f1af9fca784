"""Stage 2: end-to-end distillation, KL(original || compressed) on next-token distributions.

The teacher's logits are computed on the fly; only the compressed attention parameters train
(the rest of the student is frozen). AdamW, warm-up + cosine, gradient accumulation, gradient
clipping, forwards in the run's precision (precision.py). The order of the training windows is a
function of the seed and the step, so a run resumed from a checkpoint continues exactly as an
uninterrupted one. Under torchrun each process takes every world.size-th micro-batch of a step
(distributed.py)."""
import torch

from . import checkpoint, precision
from .distributed import SINGLE, no_sync
from .metrics import heldout_fidelity, token_kl
from .progress import Progress, log
from .schedule import warmup_cosine


class DistillOptions:
    def __init__(self, steps=0, batch=2, accum=4, lr=5e-5, warmup=20, eval_every=50, checkpoint_every=50,
                 weight_decay=0.0, clip=1.0, precision="fp32"):
        self.steps, self.batch, self.accum, self.lr, self.warmup = steps, batch, accum, lr, warmup
        self.eval_every, self.checkpoint_every = eval_every, checkpoint_every
        self.weight_decay, self.clip, self.precision = weight_decay, clip, precision


def window_indices(step, micro, options, windows, seed):
    """Training windows of micro-batch `micro` of optimizer step `step`: seeded epochs."""
    per_epoch = windows // options.batch
    g = step * options.accum + micro
    epoch, slot = divmod(g, per_epoch)
    order = torch.randperm(windows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[slot * options.batch:(slot + 1) * options.batch]


def heldout_kl(teacher, student, windows, device, options, world=SINGLE):
    return heldout_fidelity(teacher, student, windows, options.batch,
                            lambda: precision.autocast(device, options.precision), world)["kl"]


def distill(student, teacher, *, train_ids, val_ids, params, saved, options, seed, device, folder, settings,
            resume=False, extra=None, initial_kl=None, world=SINGLE):
    """Trains `params` (named) in place; checkpoints hold `saved` (named, a superset) and returns the
    history (a dict per step). The final step is kept (the schedule ends low); the history's
    held-out KL shows whether it was the best."""
    if options.accum % world.size:
        raise ValueError(f"--accum {options.accum}: the micro-batches of a step must divide among the "
                         f"{world.size} processes")
    tensors = [p for _, p in params]
    for p in student.parameters():
        p.requires_grad_(False)
    for p in tensors:
        p.requires_grad_(True)
    model = world.wrap(student, device)
    optimizer = torch.optim.AdamW(tensors, lr=options.lr, weight_decay=options.weight_decay)
    start, history = 0, []
    if resume:
        state = checkpoint.load(folder, settings)
        checkpoint.restore_params(saved, state["params"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
        log(f"stage 2: resumed at step {start}/{options.steps} from {folder}")
    else:
        if initial_kl is None:
            initial_kl = heldout_kl(teacher, student, val_ids, device, options, world)
        history.append({"step": 0, "tokens": 0, "heldout_kl": initial_kl})
        log(f"stage 2: held-out KL before {history[0]['heldout_kl']:.4f}")
    n = train_ids.shape[0] - train_ids.shape[0] % options.batch
    tokens_per_step = options.batch * options.accum * train_ids.shape[1]
    last_checkpoint = start
    progress = Progress("stage 2", options.steps - start, "steps")
    for step in range(start, options.steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, options.steps, options.lr, options.warmup)
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        mine = world.shard(range(options.accum))
        for micro in mine:
            ids = train_ids[window_indices(step, micro, options, n, seed)].to(device)
            with torch.no_grad(), precision.autocast(device, options.precision):
                target = teacher(input_ids=ids, use_cache=False).logits
            # DDP averages the processes' gradients: each scales its share by world.size.
            with no_sync(model, micro == mine[-1]), precision.autocast(device, options.precision):
                loss = token_kl(target, model(input_ids=ids, use_cache=False).logits) / options.accum
                if world.sum([float(not torch.isfinite(loss))])[0]:  # every process stops, or none
                    raise FloatingPointError(
                        f"stage 2, step {step}: the loss is {float(loss)}; the last good checkpoint ({folder}, "
                        f"step {last_checkpoint}) is kept: lower --lr and --resume, or start over")
                (loss * world.size).backward()
            loss_sum += float(loss)
        loss_sum = world.sum([loss_sum])[0]
        norm = torch.nn.utils.clip_grad_norm_(tensors, options.clip)
        optimizer.step()
        record = {"step": step + 1, "loss": loss_sum, "lr": optimizer.param_groups[0]["lr"],
                  "gradient_norm": float(norm), "tokens": (step + 1) * tokens_per_step}
        # The last step's held-out KL comes from the caller's final fidelity pass (one pass, not two).
        if (step + 1) % options.eval_every == 0 and step + 1 < options.steps:
            record["heldout_kl"] = heldout_kl(teacher, student, val_ids, device, options, world)
        history.append(record)
        if (step + 1) % options.checkpoint_every == 0 or step + 1 == options.steps:
            if world.main:
                checkpoint.save(folder, step + 1, saved, optimizer, settings, history, extra)
            last_checkpoint = step + 1
        progress.advance(1, f"KL {loss_sum:.4f}" + (f", held-out KL {record['heldout_kl']:.4f}"
                                                      if "heldout_kl" in record else ""))
    for p in tensors:
        p.requires_grad_(False)
    return history
