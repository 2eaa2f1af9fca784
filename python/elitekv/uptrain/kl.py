"""KL(teacher || student) of next-token distributions, fused and in row blocks.

Written plainly, `sum(p * (log p - log q))` with autograd makes about a dozen passes over
[tokens, vocabulary] tensors (49,152 columns for SmolLM2: 100 MB a 512-token window) and keeps
two of them for the backward; on a 2-core CPU those passes cost as much as every matrix product
of the step (docs/results.md, "Recovery speed"). Here each block of rows is done while it is in
cache, and the gradient, (softmax(student) - p) / tokens, is formed in the same pass: one
[tokens, vocabulary] buffer is kept, nothing else."""
import torch

ROWS = 16  # a block's teacher, student and gradient rows: 3 x 3 MB at 49,152 columns (the L3 holds them)


def token_kl(teacher_logits, student_logits):
    """Mean over tokens of KL(teacher || student), in nats; differentiable in student_logits."""
    return _TokenKL.apply(teacher_logits.detach(), student_logits)


class _TokenKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, teacher_logits, student_logits):
        t = teacher_logits.reshape(-1, teacher_logits.shape[-1])
        s = student_logits.reshape(-1, student_logits.shape[-1])
        tokens = t.shape[0]
        need_grad = ctx.needs_input_grad[1]
        grad = torch.empty(s.shape, dtype=torch.float32, device=s.device) if need_grad else None
        total = torch.zeros((), dtype=torch.float64, device=s.device)
        for i in range(0, tokens, ROWS):
            log_p = torch.log_softmax(t[i:i + ROWS].float(), dim=-1)
            log_q = torch.log_softmax(s[i:i + ROWS].float(), dim=-1)
            p = log_p.exp()
            total += (p * (log_p - log_q)).sum(dtype=torch.float64)
            if need_grad:
                torch.sub(log_q.exp_(), p, out=grad[i:i + ROWS])
        if need_grad:
            ctx.save_for_backward(grad)
            ctx.tokens, ctx.shape, ctx.dtype = tokens, student_logits.shape, student_logits.dtype
        return (total / tokens).to(torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return None, (grad * (grad_output / ctx.tokens)).reshape(ctx.shape).to(ctx.dtype)
