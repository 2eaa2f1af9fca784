"""The held-out fidelity both stages report (stage 2's loss, token_kl, is in kl.py)."""
import contextlib

import torch

from .distributed import SINGLE
from .kl import token_kl


@torch.no_grad()
def heldout_fidelity(teacher, student, windows, batch=2, precision=contextlib.nullcontext, world=SINGLE):
    """KL(teacher || student), top-1 agreement and both perplexities on held-out windows [N, T],
    moved batch by batch to the student's device; the forwards run inside precision() (the run's
    autocast, precision.py). Under torchrun each process takes its share of the windows."""
    device = next(student.parameters()).device
    kl_sum = agree = nll_teacher = nll_student = 0.0
    count = 0
    mine = world.shard(windows)
    for i in range(0, mine.shape[0], batch):
        ids = mine[i:i + batch].to(device)
        with precision():
            t = teacher(input_ids=ids, use_cache=False).logits.float()
            s = student(input_ids=ids, use_cache=False).logits.float()
        n = ids.shape[0] * ids.shape[1]
        kl_sum += float(token_kl(t, s)) * n
        agree += float((t.argmax(-1) == s.argmax(-1)).sum())
        targets = ids[:, 1:].reshape(-1)
        nll_teacher += float(torch.nn.functional.cross_entropy(t[:, :-1].reshape(-1, t.shape[-1]), targets, reduction="sum"))
        nll_student += float(torch.nn.functional.cross_entropy(s[:, :-1].reshape(-1, s.shape[-1]), targets, reduction="sum"))
        count += n
    kl_sum, agree, nll_teacher, nll_student, count = world.sum([kl_sum, agree, nll_teacher, nll_student, count])
    scored = windows.shape[0] * (windows.shape[1] - 1)
    return {"kl": kl_sum / count, "top1": agree / count,
            "ppl_teacher": float(torch.tensor(nll_teacher / scored).exp()),
            "ppl_student": float(torch.tensor(nll_student / scored).exp())}
