"""The quantities both stages optimize and report."""
import contextlib

import torch


def normalized_mse(prediction, target):
    """sum |ŷ - y|² / sum |y|²: a layer's relative squared error (0 is exact, 1 is as bad as zero)."""
    return (prediction - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-30)


def token_kl(teacher_logits, student_logits):
    """Mean over tokens of KL(teacher || student) of the next-token distributions, in nats."""
    teacher = torch.log_softmax(teacher_logits.float(), dim=-1)
    student = torch.log_softmax(student_logits.float(), dim=-1)
    return (teacher.exp() * (teacher - student)).sum(-1).mean()


@torch.no_grad()
def heldout_fidelity(teacher, student, windows, batch=2, precision=contextlib.nullcontext):
    """KL(teacher || student), top-1 agreement and both perplexities on held-out windows [N, T],
    moved batch by batch to the student's device; the forwards run inside precision() (stage 2's
    checks pass its bf16 autocast on CUDA)."""
    device = next(student.parameters()).device
    kl_sum = agree = nll_teacher = nll_student = 0.0
    count = 0
    for i in range(0, windows.shape[0], batch):
        ids = windows[i:i + batch].to(device)
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
    scored = windows.shape[0] * (windows.shape[1] - 1)
    return {"kl": kl_sum / count, "top1": agree / count,
            "ppl_teacher": float(torch.tensor(nll_teacher / scored).exp()),
            "ppl_student": float(torch.tensor(nll_student / scored).exp())}
