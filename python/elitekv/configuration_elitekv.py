"""Configuration of an EliteKV-compressed LLaMA model, as written by ekv-export.

On top of the LLaMA fields: elitekv_r (elite RoPE chunks per KV head), elitekv_elite_chunks
([layer][kv head][r] chunk indices, rotate_half pairing (c, c + head_dim/2)) and
elitekv_kv_rank ([layer] size d_kv of the shared key/value latent). attention_bias (LLaMA's
field) says whether q_proj, k_rope_proj and v_b_proj carry biases (a compressed Qwen2);
ekv_architecture names the family the model was compressed from.
"""
from transformers import LlamaConfig


class EliteKVConfig(LlamaConfig):
    model_type = "elitekv_llama"

    def __init__(self, elitekv_r=0, elitekv_elite_chunks=None, elitekv_kv_rank=None, **kwargs):
        self.elitekv_r = elitekv_r
        self.elitekv_elite_chunks = elitekv_elite_chunks or []
        self.elitekv_kv_rank = elitekv_kv_rank or []
        super().__init__(**kwargs)
