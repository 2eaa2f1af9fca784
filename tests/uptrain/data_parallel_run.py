"""One recovery of the tiny planted pair (tiny_models.py), stage 1 then stage 2, in the data-parallel
layout of ekv-uptrain (distributed.py): run as one process, or under torchrun as several, it
writes the trained attention parameters and both stages' losses to argv[1] (process 0)."""
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import make_pair  # noqa: E402

from elitekv.uptrain import distill, distributed, layer_local, models  # noqa: E402

torch.set_num_threads(1)
world, device = distributed.join(torch.device("cpu"))
teacher, student = make_pair()
generator = torch.Generator().manual_seed(31)
with torch.no_grad():
    for _, p in models.trainable_attention(student, models.ATTENTION_PARTS):
        p.add_(0.4 * p.abs().mean() * torch.randn(p.shape, generator=generator))
train = torch.randint(0, 64, (16, 24), generator=torch.Generator().manual_seed(32))
val = torch.randint(0, 64, (3, 24), generator=torch.Generator().manual_seed(33))
params = models.trainable_attention(student, models.ATTENTION_PARTS)
records = layer_local.recover_layers(student, teacher, train, val,
                                     layer_local.LayerLocalOptions(steps=6, batch=4, lr=3e-3, warmup=1, eval_every=2,
                                                                   parts=models.ATTENTION_PARTS),
                                     seed=3, world=world)
with tempfile.TemporaryDirectory() as folder:
    history = distill.distill(student, teacher, train_ids=train, val_ids=val, params=params, saved=params,
                              options=distill.DistillOptions(steps=5, batch=2, accum=4, lr=2e-3, warmup=1,
                                                             eval_every=2, checkpoint_every=5),
                              seed=3, device=device, folder=folder if world.main else folder + "-unused",
                              settings={"test": 1}, world=world)
if world.main:
    torch.save({"params": {n: p.detach().clone() for n, p in params}, "stage1": records, "stage2": history},
               sys.argv[1])
distributed.leave(world)
