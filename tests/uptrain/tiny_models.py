"""A tiny random LLaMA (the teacher) and an EliteKV student that equals it exactly. The teacher's
query and key rows of the non-elite dims are zero, so its attention depends on the elite RoPE
chunks alone (what RoPElite assumes); the student keeps r elite chunks per KV head, a latent as
wide as the hidden state (A = I), B_k the teacher's (zero) non-elite key rows and B_v its value
rows. Planted truth for the uptrain unit tests."""
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from elitekv.configuration_elitekv import EliteKVConfig
from elitekv.modeling_elitekv import EliteKVForCausalLM

SHAPE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, max_position_embeddings=128, rope_theta=10000.0,
             rms_norm_eps=1e-5, tie_word_embeddings=False)
R = 2
ELITE = [[[0, 3], [1, 2]], [[2, 3], [0, 1]]]  # [layer][kv head][r]


def make_pair(seed=0):
    torch.manual_seed(seed)
    teacher = LlamaForCausalLM(LlamaConfig(**SHAPE, initializer_range=0.2, attn_implementation="eager")).eval()
    d, H, G, dh = SHAPE["hidden_size"], SHAPE["num_attention_heads"], SHAPE["num_key_value_heads"], SHAPE["head_dim"]
    half = dh // 2
    with torch.no_grad():
        for l, layer in enumerate(teacher.model.layers):
            for j in range(G):
                rest = [i for i in range(dh) if i % half not in ELITE[l][j]]
                layer.self_attn.k_proj.weight[[j * dh + i for i in rest]] = 0
                for h in range(j * H // G, (j + 1) * H // G):
                    layer.self_attn.q_proj.weight[[h * dh + i for i in rest]] = 0
    config = EliteKVConfig(elitekv_r=R, elitekv_elite_chunks=ELITE, elitekv_kv_rank=[d] * SHAPE["num_hidden_layers"],
                           **SHAPE)
    student = EliteKVForCausalLM(config).eval()
    state = teacher.state_dict()
    exact = {k: v for k, v in state.items() if "self_attn.k_proj" not in k and "self_attn.v_proj" not in k}
    for l in range(SHAPE["num_hidden_layers"]):
        wk = state[f"model.layers.{l}.self_attn.k_proj.weight"].view(G, dh, d)
        wv = state[f"model.layers.{l}.self_attn.v_proj.weight"]
        elite_rows, rest_rows = [], []
        for j in range(G):
            dims = ELITE[l][j] + [c + half for c in ELITE[l][j]]
            elite_rows.append(wk[j, dims])
            rest_rows.append(wk[j, [i for i in range(dh) if i not in dims]])
        prefix = f"model.layers.{l}.self_attn."
        exact[prefix + "k_rope_proj.weight"] = torch.cat(elite_rows)
        exact[prefix + "kv_a_proj.weight"] = torch.eye(d)
        exact[prefix + "k_b_proj.weight"] = torch.cat(rest_rows)
        exact[prefix + "v_b_proj.weight"] = wv
    missing, unexpected = student.load_state_dict(exact, strict=False)
    assert not unexpected and not missing, (missing, unexpected)
    return teacher, student
