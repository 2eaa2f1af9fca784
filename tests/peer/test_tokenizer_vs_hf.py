"""ekv's tokenizer vs Hugging Face tokenizers on the whole evaluation corpus, every token id.

References (none written by us):
1. `tokenizers` built from the GGUF's vocabulary and merges with the model's declared
   pre-tokenizer ("smollm": Digits(individual_digits) then ByteLevel), as SmolLM2's own
   tokenizer.json does. ekv's default must match it exactly.
2. transformers loading the GGUF (AutoTokenizer, gguf_file=...). transformers 4.46 turns a
   GGUF "gpt2" tokenizer into ByteLevel alone (it ignores tokenizer.ggml.pre), so ekv with
   the plain GPT-2 rule must match it exactly; how often the two rules differ is printed.
3. transformers loading the tokenizer.json that ekv-convert writes.
Plus a set of hostile strings (control bytes, NUL, mixed scripts, special tokens in text)."""
import os
import shutil

from gguf import GGUFReader
from safetensors.numpy import load_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer

from peer_common import compare_tokens, env_path, report, run, workdir

model = env_path("EKV_DEFAULT_MODEL")
corpus = env_path("EKV_EVAL_TEXT")
tool = env_path("EKV_TEST_IO")
bin_dir = env_path("EKV_BIN")
work = workdir("tokenizer")
lines, failures = [], []

reader = GGUFReader(model)
field = lambda name: reader.fields[name]
tokens = [bytes(field("tokenizer.ggml.tokens").parts[i]).decode("utf-8") for i in field("tokenizer.ggml.tokens").data]
merges = [tuple(bytes(field("tokenizer.ggml.merges").parts[i]).decode("utf-8").split(" ", 1))
          for i in field("tokenizer.ggml.merges").data]
types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
reference = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
reference.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
reference.decoder = decoders.ByteLevel()
reference.add_special_tokens([AddedToken(tokens[i], normalized=False, special=True)
                              for i, t in enumerate(types) if t == 3])
from_gguf = AutoTokenizer.from_pretrained(os.path.dirname(model), gguf_file=os.path.basename(model))
hf_folder = os.path.join(work, "hf")
run(os.path.join(bin_dir, "ekv-convert"), "--model", model, "-o", hf_folder, "--quiet")
from_export = AutoTokenizer.from_pretrained(hf_folder)


def ours(path, rule=None):
    out = os.path.join(work, "ids.safetensors")
    run(tool, "tokenize", model, path, out, *([rule] if rule else []))
    return load_file(out)["tokens"].tolist()


def compare(label, mine, theirs):
    compare_tokens(label, mine, theirs, lines, failures)


text = open(corpus, encoding="utf-8").read()
smollm_ids = ours(corpus)
gpt2_ids = ours(corpus, "gpt2")
compare("eval corpus, smollm rule vs tokenizers (Digits+ByteLevel)", smollm_ids,
        reference.encode(text, add_special_tokens=False).ids)
compare("eval corpus, GPT-2 rule vs transformers GGUF tokenizer", gpt2_ids,
        from_gguf(text, add_special_tokens=False)["input_ids"])
compare("eval corpus, smollm rule vs transformers on ekv-convert's tokenizer.json", smollm_ids,
        from_export(text, add_special_tokens=False)["input_ids"])
lines.append(f"(the two rules give {len(smollm_ids)} vs {len(gpt2_ids)} tokens on the corpus: digits)")

hostile = ["tab\there\r\nCRLF \x00 nul \x01\x02\x7f ctrl", "naïve café 北京 Ελληνικά 🙂 x²³ ١٢٣",
           "<|im_start|>user\nhi 2024<|im_end|>", "   leading and trailing spaces   ", "a" * 3000,
           "'s 're 've 'm 'll 'd don't I'M", "\n\n\n\t \u00a0\u2003 spaces"]
for index, sample in enumerate(hostile):
    path = os.path.join(work, f"hostile{index}.txt")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(sample)
    compare(f"hostile #{index}", ours(path), reference.encode(sample, add_special_tokens=False).ids)

shutil.rmtree(work)
report(lines, failures)
