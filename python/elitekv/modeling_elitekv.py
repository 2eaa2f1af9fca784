"""EliteKV LLaMA for transformers (trust_remote_code), as written by ekv-export.

Each layer caches only its post-RoPE elite key dims k_e (per KV head, 2r values: the r dims
c of its elite chunks, then their partners c + head_dim/2) and the latent c = A x (d_kv
values). Attention rebuilds the non-elite keys B_k c and the values B_v c from that cache, so
the cache is the compressed one and the module trains like any PyTorch model (uptraining).
The math is docs/method.md §6; the C++ reference is ekv-check.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
import transformers
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_elitekv import EliteKVConfig


def rope_frequencies(config):
    """ω_c = θ^(-2c/d_h) after the config's scaling rule (none, linear, llama3), in float64."""
    head_dim = config.head_dim
    # transformers >= 5 keeps θ and the scaling rule in one dict, rope_parameters; 4.x has
    # rope_theta and rope_scaling.
    parameters = getattr(config, "rope_parameters", None)
    theta = parameters["rope_theta"] if parameters else config.rope_theta
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    scaling = parameters or config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_context = scaling["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_context / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_context / low, inv_freq / factor, inv_freq)
        medium = (wavelen >= old_context / high) & (wavelen <= old_context / low)
        inv_freq = torch.where(medium, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
    return inv_freq


class EliteKVRMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class EliteKVMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_elite(x, cos, sin):
    """x [..., 2r] in the k_e layout (r dims, then their partners); cos/sin [..., r]."""
    r = cos.shape[-1]
    x1, x2 = x[..., :r], x[..., r:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class EliteKVAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.r = config.elitekv_r
        self.kv_rank = config.elitekv_kv_rank[layer_idx]
        d, H, G, dh, r = config.hidden_size, self.heads, self.kv_heads, self.head_dim, self.r
        # With attention biases (Qwen2), the query, the elite keys and the values keep theirs; the
        # non-elite key bias was dropped: it shifts all logits of a query by one constant.
        bias = bool(getattr(config, "attention_bias", False))
        self.q_proj = nn.Linear(d, H * dh, bias=bias)
        self.k_rope_proj = nn.Linear(d, G * 2 * r, bias=bias)
        self.kv_a_proj = nn.Linear(d, self.kv_rank, bias=False)
        self.k_b_proj = nn.Linear(self.kv_rank, G * (dh - 2 * r), bias=False)
        self.v_b_proj = nn.Linear(self.kv_rank, G * dh, bias=bias)
        self.o_proj = nn.Linear(H * dh, d, bias=False)

        half, group = dh // 2, H // G
        elite = config.elitekv_elite_chunks[layer_idx]  # [G][r]
        elite_dims, rest_dims = [], []
        for j in range(G):
            chosen = list(elite[j])
            dims = chosen + [c + half for c in chosen]
            elite_dims.append(dims)
            rest_dims.append([i for i in range(dh) if i not in set(dims)])
        group_of_head = [h // group for h in range(H)]
        # What picks each query head's dims, and the elite frequencies, as lists: the tensors are
        # built from them on first use on a device (_tables). Not buffers: transformers >= 5 builds
        # the module on the meta device and leaves buffers that are not in the checkpoint unset.
        self._index_lists = (group_of_head, [elite_dims[j] for j in group_of_head],
                             [rest_dims[j] for j in group_of_head])
        self._elite_chunks, self._rope_config = [list(e) for e in elite], config
        self._tables_on = None

    def _tables(self, device):
        """(group_of_head [H], q_elite_index [H, 2r], q_rest_index [H, d_h - 2r], elite frequencies
        [G, r] in float64, so that .to(dtype) cannot lower the angles m·ω_c) on `device`."""
        if self._tables_on is None or self._tables_on[0] != device:
            indices = [torch.tensor(values, dtype=torch.long, device=device) for values in self._index_lists]
            chunks = torch.tensor(self._elite_chunks, dtype=torch.long)
            frequencies = rope_frequencies(self._rope_config)[chunks].to(device)
            self._tables_on = (device, *indices, frequencies)
        return self._tables_on[1:]

    def forward(self, hidden_states, position_ids, past_key_value=None, attention_mask=None):
        B, T, _ = hidden_states.shape
        H, G, dh, r = self.heads, self.kv_heads, self.head_dim, self.r
        q = self.q_proj(hidden_states).view(B, T, H, dh)
        group_of_head, q_elite_index, q_rest_index, elite_frequencies = self._tables(q.device)
        heads = torch.arange(H, device=q.device)[:, None]
        q_elite = q[:, :, heads, q_elite_index]  # [B, T, H, 2r]
        q_rest = q[:, :, heads, q_rest_index]    # [B, T, H, d_h - 2r]
        k_elite = self.k_rope_proj(hidden_states).view(B, T, G, 2 * r)
        latent = self.kv_a_proj(hidden_states)         # [B, T, d_kv]

        angles = position_ids.to(torch.float64)[:, :, None, None] * elite_frequencies  # [B, T, G, r]
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        k_elite = rotate_elite(k_elite, cos, sin)
        q_elite = rotate_elite(q_elite, cos[:, :, group_of_head], sin[:, :, group_of_head])

        # The cache holds k_e [B, G, S, 2r] and the latent [B, 1, S, d_kv]: nothing else.
        k_elite, latent = k_elite.transpose(1, 2), latent[:, None]
        if past_key_value is not None:
            k_elite, latent = past_key_value.update(k_elite, latent, self.layer_idx)
        S = k_elite.shape[2]
        k_rest = self.k_b_proj(latent[:, 0]).view(B, S, G, dh - 2 * r).transpose(1, 2)
        values = self.v_b_proj(latent[:, 0]).view(B, S, G, dh).transpose(1, 2)
        k_elite, k_rest, values = (t[:, group_of_head] for t in (k_elite, k_rest, values))

        scale = 1.0 / math.sqrt(dh)
        scores = (q_elite.transpose(1, 2) @ k_elite.transpose(2, 3) + q_rest.transpose(1, 2) @ k_rest.transpose(2, 3)) * scale
        query_pos = torch.arange(S - T, S, device=q.device)[:, None]
        allowed = torch.arange(S, device=q.device)[None, :] <= query_pos  # [T, S] causal
        allowed = allowed[None, None]
        if attention_mask is not None and attention_mask.dim() == 2:
            allowed = allowed & attention_mask[:, None, None, -S:].bool()
        scores = scores.float().masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(values.dtype)
        out = (probs @ values).transpose(1, 2).reshape(B, T, H * dh)
        return self.o_proj(out)


class EliteKVDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.input_layernorm = EliteKVRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = EliteKVAttention(config, layer_idx)
        self.post_attention_layernorm = EliteKVRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = EliteKVMLP(config)

    def forward(self, hidden_states, position_ids, past_key_value, attention_mask):
        hidden_states = hidden_states + self.self_attn(self.input_layernorm(hidden_states), position_ids,
                                                       past_key_value, attention_mask)
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class EliteKVPreTrainedModel(PreTrainedModel):
    config_class = EliteKVConfig
    base_model_prefix = "model"
    _no_split_modules = ["EliteKVDecoderLayer"]
    _supports_cache_class = True

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()


class EliteKVModel(EliteKVPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(EliteKVDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = EliteKVRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids, position_ids=None, past_key_values=None, attention_mask=None, use_cache=False):
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        elif past_key_values is not None and not isinstance(past_key_values, Cache):
            past_key_values = DynamicCache.from_legacy_cache(past_key_values)
        if position_ids is None:
            start = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)
        hidden = self.embed_tokens(input_ids)
        for layer in self.layers:
            hidden = layer(hidden, position_ids, past_key_values, attention_mask)
        return self.norm(hidden), past_key_values


class EliteKVForCausalLM(EliteKVPreTrainedModel):
    # transformers >= 5 names what a tied weight is tied to; 4.x lists the tied weights.
    _tied_weights_keys = ({"lm_head.weight": "model.embed_tokens.weight"}
                          if int(transformers.__version__.split(".")[0]) >= 5 else ["lm_head.weight"])

    def __init__(self, config):
        super().__init__(config)
        self.model = EliteKVModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, use_cache=True,
                                      **kwargs):
        # Only the tokens the cache has not seen; positions follow from the cache length.
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            input_ids = input_ids[:, past_key_values.get_seq_length():]
        return {"input_ids": input_ids, "past_key_values": past_key_values, "attention_mask": attention_mask,
                "use_cache": use_cache}

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, labels=None,
                use_cache=None, cache_position=None, return_dict=True, **kwargs):
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if position_ids is None and cache_position is not None:
            position_ids = cache_position[None].expand(input_ids.shape[0], -1)
        hidden, cache = self.model(input_ids, position_ids, past_key_values, attention_mask, use_cache)
        logits = self.lm_head(hidden).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache if use_cache else None)
