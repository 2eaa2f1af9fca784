"""Stage 1: layer-local distillation (the CPU path).

Layers are recovered in order. Layer l sees the hidden states that the already-recovered
compressed layers below it produce (so it learns to work on what it will really receive);
its target is the original attention block applied to those same inputs. Its compressed
attention parameters are fitted by Adam on the normalized MSE with a warm-up + cosine
schedule, judged on held-out sequences, and the best held-out step is kept: a layer never
leaves stage 1 worse on held-out data than it entered. Memory: the hidden states, inputs and
targets of the sequences, [N, T, d] each, and one layer's gradients. Under torchrun every process
holds all of them and takes every world.size-th window of a step's batch (distributed.py)."""
import copy

import torch

from . import precision
from .distributed import SINGLE
from .models import trainable_attention
from .progress import Progress, log
from .schedule import warmup_cosine


class LayerLocalOptions:
    def __init__(self, steps=200, batch=4, lr=3e-4, warmup=10, eval_every=25, parts=None, precision="fp32"):
        self.steps, self.batch, self.lr, self.warmup, self.eval_every = steps, batch, lr, warmup, eval_every
        self.parts, self.precision = parts, precision


def _teacher_attention(layer, rotary, x, positions):
    """The original attention block on x; eager attention masks only what it is given, so causal."""
    cos, sin = rotary(x, positions)
    T = x.shape[1]
    mask = torch.full((T, T), torch.finfo(x.dtype).min).triu(1)[None, None]
    return layer.self_attn(hidden_states=x, attention_mask=mask, position_ids=positions,
                           position_embeddings=(cos, sin))[0]


def _positions(tokens):
    return torch.arange(tokens.shape[1])[None].expand(tokens.shape[0], -1)


def _batched(fn, inputs, batch):
    return torch.cat([fn(inputs[i:i + batch]) for i in range(0, inputs.shape[0], batch)])


@torch.no_grad()
def _heldout_error(attention, x, y, positions, batch):
    num = den = 0.0
    for i in range(0, x.shape[0], batch):
        out = attention(x[i:i + batch], positions[i:i + batch])
        num += float((out - y[i:i + batch]).pow(2).sum())
        den += float(y[i:i + batch].pow(2).sum())
    return num / max(den, 1e-30)


def recover_layers(student, teacher, train_ids, val_ids, options, seed, resume=None, on_layer_done=None,
                   world=SINGLE):
    """Trains every layer's compressed attention in place; returns per-layer records.

    After each layer, on_layer_done(state) receives what a resumed run needs besides the
    parameters (the next layer, the records, the sampler's state); `resume` is such a state,
    with the student's parameters already restored: the run continues bit for bit."""
    if options.batch % world.size:
        raise ValueError(f"--layer-batch {options.batch}: the windows of a step must divide among the "
                         f"{world.size} processes")
    device = train_ids.device
    with precision.autocast(device, options.precision):
        return _recover_layers(student, teacher, train_ids, val_ids, options, seed, resume, on_layer_done, world)


def _recover_layers(student, teacher, train_ids, val_ids, options, seed, resume, on_layer_done, world):
    generator = torch.Generator().manual_seed(seed)
    s_model, t_model = student.model, teacher.model
    rotary = t_model.rotary_emb
    with torch.no_grad():
        h_train, h_val = s_model.embed_tokens(train_ids), s_model.embed_tokens(val_ids)
    p_train, p_val = _positions(train_ids), _positions(val_ids)
    records, first = [], 0
    if resume is not None:
        records, first = list(resume["records"]), resume["next_layer"]
        generator.set_state(resume["generator"])
        log(f"stage 1: resumed at layer {first}")
    layers = len(s_model.layers)
    progress = Progress("stage 1", (layers - first) * options.steps, "steps")
    for l in range(layers):
        s_layer, t_layer = s_model.layers[l], t_model.layers[l]
        if l < first:  # recovered before the kill: only its outputs are needed
            with torch.no_grad():
                h_train = _batched(lambda h: s_layer(h, p_train[:h.shape[0]], None, None), h_train, 8)
                h_val = _batched(lambda h: s_layer(h, p_val[:h.shape[0]], None, None), h_val, 8)
            continue
        attention = s_layer.self_attn
        with torch.no_grad():
            x_train, x_val = s_layer.input_layernorm(h_train), s_layer.input_layernorm(h_val)
            y_train = _batched(lambda x: _teacher_attention(t_layer, rotary, x, p_train[:x.shape[0]]), x_train, 8)
            y_val = _batched(lambda x: _teacher_attention(t_layer, rotary, x, p_val[:x.shape[0]]), x_val, 8)
        named = trainable_attention(attention, options.parts)
        params = [p for _, p in named]
        for p in params:
            p.requires_grad_(True)
        before = _heldout_error(attention, x_val, y_val, p_val, 8)
        best, best_step, best_state = before, 0, copy.deepcopy(attention.state_dict())
        model = world.wrap(attention, train_ids.device)
        optimizer = torch.optim.Adam(params, lr=options.lr)
        n = x_train.shape[0]
        order = torch.randperm(n, generator=generator)
        cursor, first_norm = 0, 0.0
        for step in range(options.steps):
            for group in optimizer.param_groups:
                group["lr"] = warmup_cosine(step, options.steps, options.lr, options.warmup)
            if cursor + options.batch > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            index = order[cursor:cursor + options.batch]
            cursor += options.batch
            # The normalized MSE of the whole batch: each process its windows' share of the
            # numerator, scaled by world.size because DDP averages the gradients.
            mine = world.shard(index)
            squared = (model(x_train[mine], p_train[mine]) - y_train[mine]).pow(2).sum()
            scale = y_train[index].pow(2).sum().clamp_min(1e-30)
            loss = world.sum([float(squared)])[0] / float(scale)
            if not torch.isfinite(torch.tensor(loss)):
                raise FloatingPointError(f"stage 1, layer {l}, step {step}: the loss is {loss}")
            optimizer.zero_grad(set_to_none=True)
            (squared * world.size / scale).backward()
            if step == 0:  # the gradient's size at the start: a learning rate's yardstick
                first_norm = float(torch.norm(torch.stack([p.grad.norm() for p in params])))
            optimizer.step()
            if (step + 1) % options.eval_every == 0 or step + 1 == options.steps:
                error = _heldout_error(attention, x_val, y_val, p_val, 8)
                if error < best:
                    best, best_step, best_state = error, step + 1, copy.deepcopy(attention.state_dict())
            progress.advance(1, f"layer {l} loss {loss:.4f} held-out best {best:.4f}")
        attention.load_state_dict(best_state)
        for p in params:
            p.requires_grad_(False)
        log(f"layer {l}: held-out error {before:.4f} -> {best:.4f} (best step {best_step}/{options.steps})")
        records.append({"layer": l, "heldout_error_before": before, "heldout_error_after": best, "best_step": best_step,
                        "first_gradient_norm": first_norm})
        with torch.no_grad():
            h_train = _batched(lambda h: s_layer(h, p_train[:h.shape[0]], None, None), h_train, 8)
            h_val = _batched(lambda h: s_layer(h, p_val[:h.shape[0]], None, None), h_val, 8)
        if on_layer_done is not None:
            on_layer_done({"next_layer": l + 1, "records": list(records), "generator": generator.get_state()})
    return records
