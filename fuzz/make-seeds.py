#!/usr/bin/env python3
"""Writes the fuzz seed corpora (fuzz/seeds/<target>/) from real files, sliced small.

   .venv/bin/python fuzz/make-seeds.py BUILD_DIR   (BUILD_DIR has tests/ekv_test_io)

Sources: the two real models in ~/.cache/ekv (their GGUF metadata with the tokenizer arrays cut
to their first entries, and a few real tensors, two rows of a quantized one), the real export of
the main job when out/model-elitekv exists (safetensors header, config.json, tokenizer.json), and
the real export of the second family (out-qwen), and the tiny planted model taken through the whole chain by `ekv_test_io tiny-pipeline` (every
artifact kind, written by ekv's own writers; real files of a model small enough to fuzz).
The seeds are committed; run this again when a format changes.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import h5py
import numpy as np
from safetensors.torch import save as save_safetensors
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
CACHE = Path(os.environ.get("EKV_CACHE", Path.home() / ".cache" / "ekv"))
MODELS = {"smollm2": CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf", "qwen2": CACHE / "Qwen2.5-Coder-0.5B-Instruct.gguf"}
KEEP_TOKENS = 300


def gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def gguf_value(kind, value) -> bytes:
    V = gguf.GGUFValueType
    formats = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
               V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}
    if kind == V.STRING:
        return gguf_string(value)
    return struct.pack(formats[kind], value)


def sliced_gguf(path: Path) -> bytes:
    """The real file's metadata (arrays cut to their first entries) and a few of its tensors."""
    reader = gguf.GGUFReader(str(path))
    V = gguf.GGUFValueType
    items = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kinds = field.types
        if kinds[0] == V.ARRAY:
            values = [field.parts[i] for i in field.data][:KEEP_TOKENS if "merges" not in key else KEEP_TOKENS // 2]
            element = kinds[1]
            body = struct.pack("<IQ", element, len(values))
            for v in values:
                body += gguf_value(element, bytes(v) if element == V.STRING else v[0].item())
            items.append(gguf_string(key.encode()) + struct.pack("<I", V.ARRAY) + body)
        else:
            value = field.parts[field.data[0]]
            value = bytes(value) if kinds[0] == V.STRING else value[0].item()
            items.append(gguf_string(key.encode()) + struct.pack("<I", kinds[0]) + gguf_value(kinds[0], value))
    chosen = []
    for t in reader.tensors:
        if t.name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.bias"):
            chosen.append((t.name, list(t.shape), int(t.tensor_type), bytes(t.data)))
        elif t.name == "blk.0.attn_k.weight":  # two rows of a quantized matrix, as they are in the file
            row_bytes = t.n_bytes // int(t.shape[1])
            chosen.append((t.name, [int(t.shape[0]), 2], int(t.tensor_type), bytes(t.data.reshape(-1))[: 2 * row_bytes]))
    infos, data = b"", b""
    for name, shape, kind, raw in chosen:
        infos += gguf_string(name.encode()) + struct.pack("<I", len(shape))
        infos += b"".join(struct.pack("<Q", int(d)) for d in shape) + struct.pack("<IQ", kind, len(data))
        data += raw + b"\0" * (-len(raw) % 32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(chosen), len(items)) + b"".join(items) + infos
    return head + b"\0" * (-len(head) % 32) + data


def trimmed_tokenizer(path: Path) -> bytes:
    tok = json.loads(path.read_text())
    vocab = {t: i for t, i in tok["model"]["vocab"].items() if i < KEEP_TOKENS}
    merges = []
    for m in tok["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    tok["model"]["vocab"], tok["model"]["merges"] = vocab, merges
    tok["added_tokens"] = [t for t in tok.get("added_tokens", []) if t["id"] < KEEP_TOKENS]
    return json.dumps(tok, ensure_ascii=False).encode()


def artifact_program(path: Path) -> bytes:
    """An HDF5 artifact as the fuzz_artifact program: attributes verbatim, small datasets with
    their values, larger ones as seeded normal draws."""
    kinds = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16"}
    lines = []

    def attributes(name, obj):
        for key, value in obj.attrs.items():
            if isinstance(value, (bytes, str)):
                text = value.decode() if isinstance(value, bytes) else value
                lines.append(f"a {name} {key} s {text.replace(chr(10), ' ')}")
            elif np.issubdtype(np.asarray(value).dtype, np.integer):
                lines.append(f"a {name} {key} i {int(value)}")
            else:
                lines.append(f"a {name} {key} f {float(value)!r}")

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            dims = ",".join(str(d) for d in obj.shape) or "-"
            values = np.asarray(obj[()]).reshape(-1)
            fill = "v " + " ".join(repr(v.item()) for v in values) if values.size <= 256 else f"r {len(lines)}"
            lines.append(f"d /{name} {kinds[str(obj.dtype)]} {dims} {fill}")
        attributes("/" + name, obj)

    with h5py.File(path, "r") as f:
        attributes("/", f)
        f.visititems(visit)
    return ("\n".join(lines) + "\n").encode()


def write(target: str, name: str, data: bytes):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    print(f"{target}/{name}: {len(data)} bytes")


def main():
    build = Path(sys.argv[1])
    for name, path in MODELS.items():
        write("fuzz_gguf", f"{name}-sliced.gguf", sliced_gguf(path))
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp)
        subprocess.run([str(build / "tests" / "ekv_test_io"), "tiny-pipeline", str(tiny)], check=True)
        write("fuzz_gguf", "tiny-model.gguf", (tiny / "tiny.gguf").read_bytes())
        write("fuzz_safetensors", "tiny-tokens.safetensors", b"\0" + (tiny / "tokens.safetensors").read_bytes())
        write("fuzz_safetensors", "tiny-export.safetensors", b"\0" + (tiny / "export" / "model.safetensors").read_bytes())
        write("fuzz_config_json", "tiny-export.json", (tiny / "export" / "config.json").read_bytes())
        for artifact in ("calib.h5", "rope.h5", "export.h5", "export/decode-pack.h5"):
            name = Path(artifact).name.replace(".h5", ".txt")
            write("fuzz_artifact", name, artifact_program(tiny / artifact))
    qwen_export = ROOT / "out-qwen" / "model-elitekv"
    if qwen_export.exists():
        write("fuzz_config_json", "qwen2-export.json", (qwen_export / "config.json").read_bytes())
        write("fuzz_tokenizer_json", "qwen2-trimmed.json", trimmed_tokenizer(qwen_export / "tokenizer.json"))
    export = ROOT / "out" / "model-elitekv"
    if export.exists():
        config = json.loads((export / "config.json").read_text())
        write("fuzz_config_json", "smollm2-export.json", json.dumps(config, indent=1).encode())
        plain = {k: v for k, v in config.items() if not k.startswith("elitekv") and k != "auto_map"}
        plain.update(architectures=["LlamaForCausalLM"], model_type="llama")
        write("fuzz_config_json", "smollm2-llama.json", json.dumps(plain, indent=1).encode())
        write("fuzz_tokenizer_json", "smollm2-trimmed.json", trimmed_tokenizer(export / "tokenizer.json"))
        with safe_open(str(export / "model.safetensors"), framework="pt") as f:
            names = sorted(f.keys())
            small = {n: f.get_tensor(n) for n in names if n.startswith("model.layers.0.") and "norm" in n}
            small["model.layers.0.self_attn.k_rope_proj.weight"] = f.get_tensor(
                "model.layers.0.self_attn.k_rope_proj.weight")[:2].clone()
        write("fuzz_safetensors", "smollm2-export-slice.safetensors", b"\0" + save_safetensors(small, {"format": "pt"}))
        index = {"metadata": {"total_size": 1}, "weight_map": {n: "model-00001-of-00002.safetensors" for n in names[:40]}}
        write("fuzz_safetensors", "smollm2-index.json", b"\1" + json.dumps(index, indent=1).encode())


if __name__ == "__main__":
    main()
