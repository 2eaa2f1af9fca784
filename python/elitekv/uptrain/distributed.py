"""Data-parallel training under torchrun: torch.distributed with DDP, gloo on CPUs, NCCL on GPUs.

torchrun (or `srun torchrun` on a cluster) starts the processes and sets RANK, WORLD_SIZE,
LOCAL_RANK and LOCAL_WORLD_SIZE; without them ekv-uptrain is one process and nothing here
communicates. Every process holds both models and the same windows in the same seeded order;
each computes its share of a step (stage 2: micro-batches, stage 1: windows of the batch) and
DDP averages the gradients, so a step equals the one-process step of the same global batch up
to the order of floating-point sums. Process 0 alone writes checkpoints, logs and the output."""
import contextlib
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


class World:
    def __init__(self, rank=0, size=1, local_rank=0, local_size=1):
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size

    @property
    def main(self):
        return self.rank == 0

    def shard(self, items):
        """This process's share of `items` (round robin)."""
        return items[self.rank::self.size]

    def sum(self, values):
        """The element-wise sum over processes of a list of numbers."""
        if self.size == 1:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(total)
        return total.tolist()

    def barrier(self):
        if self.size > 1:
            dist.barrier()

    def wrap(self, module, device):
        """`module` whose backward averages its gradients over the processes (itself when alone)."""
        if self.size == 1:
            return module
        # Every process loaded the same files: only the trained parameters take part (the frozen
        # ones may be bf16, which gloo cannot send); buffers are index tables rebuilt from the config.
        frozen = [name for name, p in module.named_parameters() if not p.requires_grad]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            module, frozen + [name for name, _ in module.named_buffers()])
        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False)


SINGLE = World()


def join(device):
    """(world, device): joins the torchrun process group when there is one; a GPU process takes
    the GPU of its local rank."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE, device
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")),
                  int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world, device


def leave(world):
    if world.size > 1:
        dist.barrier()
        dist.destroy_process_group()


def torchrun(processes):
    """The command that starts `processes` copies of what follows on this machine (torchrun as
    `python -m torch.distributed.run`). Debian's torch 1.13 on Python 3.11 cannot parse its own
    default --redirects/--tee (fixed in torch 2): there stdout is asked to be teed, which parses."""
    streams = ["--redirects", "1", "--tee", "1"] if int(torch.__version__.split(".")[0]) < 2 else []
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            *streams]


def no_sync(module, last):
    """DDP's gradient accumulation: communicate only on the last micro-batch of a step."""
    if isinstance(module, DistributedDataParallel) and not last:
        return module.no_sync()
    return contextlib.nullcontext()
