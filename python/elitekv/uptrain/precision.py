"""Arithmetic of the training step: fp32, or bf16 for what does not train.

With bf16, the frozen Linear weights inside the decoder layers (the teacher's all, the student's
all but the trained attention parts) are stored in bf16 and every matrix product runs under
autocast in bf16; embeddings, norms, the residual stream, the trained weights, their gradients,
the optimizer state and the KL stay fp32. On a CPU this pays only where the CPU multiplies bf16
natively (AVX-512 BF16 or AMX); elsewhere autocast would emulate it, slower than fp32, so `auto`
picks fp32 there."""
import contextlib

import torch

CHOICES = ("auto", "fp32", "bf16")


def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU multiplies bf16 natively (Linux: the avx512_bf16 or amx_bf16 flag)."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(requested, device):
    """`requested` (auto|fp32|bf16) for `device`: auto is bf16 where the device has it."""
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(device, precision):
    """The context every forward of the step runs in."""
    if precision == "bf16":
        # No cast cache: stage 1 evaluates under no_grad inside the region it then trains in, and
        # a weight's bf16 copy cached there (without autograd history) would be reused by the
        # training forward ("element 0 of tensors does not require grad"). Frozen weights are
        # stored in bf16 already (lower_frozen), so only the trained ones are cast, per use.
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    if device.type == "cpu":
        return torch.autocast("cpu", enabled=False)
    return contextlib.nullcontext()


def lower_frozen(model, precision, trained=()):
    """Stores the decoder layers' Linear weights in bf16, except the parameters in `trained`
    (named, as models.trainable_attention returns them)."""
    if precision != "bf16":
        return
    keep = {id(p) for _, p in trained}
    with torch.no_grad():
        for layer in model.model.layers:
            for module in layer.modules():
                if isinstance(module, torch.nn.Linear):
                    for name, p in module.named_parameters(recurse=False):
                        if id(p) not in keep:
                            setattr(module, name, torch.nn.Parameter(p.to(torch.bfloat16), requires_grad=False))
