"""Checkpoints of both stages: every attention parameter of the student (so a checkpoint alone
restores what stages 1 and 2 changed), the optimizer state and step (stage 2) or the next layer
and sampler state (stage 1, in `extra`), and the settings it was made with.
Written as name.tmp, fsynced, renamed: a kill never leaves a half checkpoint."""
import os
import pickle

import torch

from .failpoint import failpoint

FILE = "checkpoint.pt"


def save(folder, step, student_params, optimizer, settings, history, extra=None):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, FILE)
    state = {"step": step, "params": snapshot(student_params),
             "optimizer": optimizer.state_dict() if optimizer is not None else None,
             "settings": settings, "history": history, "extra": extra}
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    failpoint("uptrain-checkpoint")
    os.replace(path + ".tmp", path)


class CheckpointError(RuntimeError):
    pass


def load(folder, settings):
    """The checkpoint in `folder`, refused unless it was made with the same settings."""
    path = os.path.join(folder, FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path)
        required = {"step", "params", "optimizer", "settings", "history", "extra"}
        if not isinstance(state, dict) or not required <= set(state):
            raise CheckpointError(f"{path}: not an ekv-uptrain checkpoint (expected the keys {sorted(required)})")
    except (RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"{path}: cannot be read ({type(error).__name__}: {str(error)[:200]}): truncated or "
                              f"damaged; start over without --resume") from error
    if state["settings"] != settings:
        changed = sorted(k for k in set(settings) | set(state["settings"])
                         if settings.get(k) != state["settings"].get(k))
        raise ValueError(f"{path}: made with other settings ({', '.join(changed)}): resume with the same "
                         f"command, or start over without --resume")
    return state


def snapshot(student_params):
    """A copy of the named parameters, for restore_params."""
    return {n: p.detach().clone() for n, p in student_params}


def restore_params(student_params, saved):
    named = dict(student_params)
    missing = set(named) ^ set(saved)
    if missing:
        raise ValueError(f"checkpoint parameters do not match the model: {sorted(missing)[:4]}")
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(saved[name])
