"""The second family, Qwen2.5-Coder-0.5B-Instruct (qwen2: q/k/v biases, θ = 1e6, Q5_0/Q4_K/Q6_K/
Q8_0 tensors), against peers we did not write.

Tokenizer, token for token:
1. transformers loading the GGUF (its Qwen2 converter: NFC, Qwen2's Split pattern, ByteLevel)
   on the evaluation and calibration corpora and on text with digits, code, CJK, emoji and
   decomposed accents (which NFC composes);
2. transformers loading the tokenizer.json that ekv-convert writes;
3. Llama 3's "llama-bpe" rule: `tokenizers` with Llama 3's Split pattern on this vocabulary
   (no Llama 3 file is on PyPI; the pattern is what differs between the rules).
Dequantization: the smallest real tensor of each type in the file (Q5_0, Q4_K, Q6_K, Q8_0) bit for bit
against the `gguf` package.
Forward: logits of ekv on the GGUF vs transformers loading the same GGUF (dequantized by the
`gguf` package, not by ekv) on 2 windows x 256 tokens of the evaluation corpus; perplexity of
ekv-check vs the same protocol in transformers on 4 windows x 512 tokens."""
import json
import os
import shutil

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from gguf import GGUFReader
from gguf.quants import dequantize
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

from peer_common import compare_tokens, env_path, perplexity_vs_transformers, report, run, workdir

model = env_path("EKV_SECOND_MODEL")
corpus = env_path("EKV_EVAL_TEXT")
calib = env_path("EKV_CALIB_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("second")
lines, failures = [], []
torch.set_num_threads(os.cpu_count() or 1)
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def ours(path, rule=None, source=model):
    out = os.path.join(work, "ids.safetensors")
    run(tool, "tokenize", source, path, out, *([rule] if rule else []))
    return load_file(out)["tokens"].tolist()


def compare(label, mine, theirs):
    compare_tokens(label, mine, theirs, lines, failures)


def text_file(name, text):
    path = os.path.join(work, name)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return path


folder, name = os.path.dirname(model), os.path.basename(model)
from_gguf = AutoTokenizer.from_pretrained(folder, gguf_file=name)
hf_folder = os.path.join(work, "hf")
run(os.path.join(bin_dir, "ekv-convert"), "--model", model, "-o", hf_folder, "--quiet")
from_export = AutoTokenizer.from_pretrained(hf_folder)
vocab = from_gguf.backend_tokenizer.get_vocab()
merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
          for m in json.loads(from_gguf.backend_tokenizer.to_str())["model"]["merges"]]
llama3 = Tokenizer(models.BPE(vocab, merges))
llama3.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
llama3.decoder = decoders.ByteLevel()
llama3.add_special_tokens([AddedToken(t, normalized=False, special=True)
                           for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])

samples = {
    "eval corpus": open(corpus, encoding="utf-8").read(),
    "calib corpus": open(calib, encoding="utf-8").read(),
    "digits": "pi = 3.14159265358979; 1234567 + 89 = 1234656; 2024-11-24T12:00:00Z 0x7fff",
    "code": "def f(x):\n    return [i**2 for i in range(x)]  # comment\n\tif (a && b) { y += 1; }\r\n",
    "cjk": "北京是中国的首都。東京は日本の首都です。서울은 한국의 수도입니다。",
    "emoji": "ok 🙂👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 end",
    "nfc": "cafe\u0301 nai\u0308ve A\u030a \u1e9b\u0323 Ω≠Ω",
    "contractions": "I'M HERE, you'Re there; DON'T 'll 've",
    "specials": "<|im_start|>user\nhi 2024<|im_end|>\n<|endoftext|>",
}
for label, text in samples.items():
    path = text_file("sample.txt", text)
    mine = ours(path)
    compare(f"{label}: qwen2 rule vs transformers' GGUF tokenizer", mine,
            from_gguf(text, add_special_tokens=False)["input_ids"])
    compare(f"{label}: qwen2 rule vs transformers on ekv-convert's tokenizer.json", mine,
            from_export(text, add_special_tokens=False)["input_ids"])
    compare(f"{label}: llama3 rule vs tokenizers with Llama 3's pattern", ours(path, "llama3"),
            llama3.encode(text, add_special_tokens=False).ids)
ids = ours(corpus)

reader = GGUFReader(model)
first_of_type = {}  # the smallest tensor of each type (the embedding alone is 136 M values)
for tensor in reader.tensors:
    known = first_of_type.get(tensor.tensor_type.name)
    if known is None or tensor.n_elements < known.n_elements:
        first_of_type[tensor.tensor_type.name] = tensor
dequantized = os.path.join(work, "dequant.safetensors")
run(tool, "dequant-gguf", model, dequantized, *[t.name for t in first_of_type.values()])
ekv_values = load_file(dequantized)
for type_name, tensor in sorted(first_of_type.items()):
    reference_values = dequantize(tensor.data, tensor.tensor_type).reshape(ekv_values[tensor.name].shape)
    diff = float(np.max(np.abs(ekv_values[tensor.name].astype(np.float64) - reference_values)))
    lines.append(f"{type_name} ({tensor.name}, {reference_values.size} values): max abs diff vs gguf {diff:g}")
    if diff != 0.0:
        failures.append(f"{tensor.name} ({type_name}): ekv differs from gguf by {diff:g}")
for needed in ("Q5_0", "Q4_K", "Q6_K", "Q8_0"):
    if needed not in first_of_type:
        failures.append(f"the second model has no {needed} tensor (expected one)")

# Forward: transformers dequantizes the GGUF itself (gguf package), so this checks our reader,
# our Q5_0/Q4_K/Q6_K/Q8_0 decoding, the qwen2 layout and the biases at once.
reference = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32,
                                                 attn_implementation="eager").eval()
windows, length = 2, 256
start = len(ids) // 3
batch = np.array(ids[start:start + windows * length], dtype=np.int32).reshape(windows, length)
tokens_path = os.path.join(work, "tokens.safetensors")
save_file({"tokens": batch}, tokens_path)
out = os.path.join(work, "logits.safetensors")
run(tool, "logits", model, tokens_path, out)
mine = load_file(out)["logits"]
with torch.no_grad():
    theirs = reference(torch.from_numpy(batch.astype(np.int64))).logits.reshape(windows * length, -1).numpy()
relative = float(np.max(np.abs(mine - theirs)) / np.max(np.abs(theirs)))
agreement = float(np.mean(np.argmax(mine, axis=1) == np.argmax(theirs, axis=1)))
lines.append(f"logits {windows}x{length}: max|dlogit|/max|logit| = {relative:.3e} (bound 1e-4), "
             f"argmax agreement {100 * agreement:.3f} % (bound 99.8 %)")
if not relative <= 1e-4:
    failures.append(f"logit error {relative:.3e} > 1e-4")
if not agreement >= 0.998:
    failures.append(f"argmax agreement {agreement:.5f} < 0.998")

window, count = 512, 4
perplexity_vs_transformers(bin_dir, model, corpus, reference, ids, window, count, lines, failures)

shutil.rmtree(work)
report(lines, failures)
