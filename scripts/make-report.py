#!/usr/bin/env python3
"""Writes the main job's report, OUT/report.md: the fidelity table, the cache accounting, the
decode check, a per-layer figure (held-out attention-block error and the latent size J-LRD gave
each layer), the elite-chunk heat map when OUT/rope-elite.png exists, the preset, and the exact
command of every step (the first line of each log in OUT/logs/).

    scripts/make-report.py OUT --preset configs/smollm2-135m-25.toml
"""
import argparse
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# The steps in pipeline order: (log name, what it made).
STEPS = [
    ("info", "info.txt"),
    ("ppl", "ppl-original.txt"),
    ("calibrate", "calib.h5"),
    ("select-rope", "rope-elite-l1.h5"),
    ("jlrd", "jlrd.h5"),
    ("export", "model-elitekv/"),
    ("decode", "decode.txt"),
    ("compare", "fidelity.json"),
    ("uptrain", "model-uptrained/"),
    ("compare-uptrained", "fidelity-uptrained.json"),
    ("recover", "model-recovered/"),
    ("compare-recovered", "fidelity-recovered.json"),
    ("gguf-uptrained", "model-uptrained.gguf"),
    ("deepseek-uptrained", "model-uptrained-deepseek/"),
]

# The recovered model in stock engines' formats (the preset's "# engine-formats:" line): file,
# what reads it, and the log holding ekv-export's final line.
ENGINE_FILES = [("model-uptrained.gguf", "llama.cpp (deepseek2, MLA cache)", "gguf-uptrained.txt"),
                ("model-uptrained-deepseek", "transformers' DeepseekV3, no remote code (vLLM and SGLang load "
                 "this format too; not run here)", "deepseek-uptrained.txt")]

# Recovered models (ekv-uptrain) whose fidelity reports join the table when present.
RECOVERED = [("fidelity-uptrained.json", "recovered, short (main job)"),
             ("fidelity-recovered.json", "recovered, full CPU (make recover)")]


def final_line(path):
    """The `final:` line a tool printed into a captured stdout file, or '' if none."""
    for line in reversed(pathlib.Path(path).read_text().splitlines()):
        if line.startswith("final:"):
            return line
    return ""


def command_of(log):
    """The command line a tool logged first ("ekv-x 0.1.0 (git sha): COMMAND")."""
    first = log.read_text().splitlines()[0] if log.exists() and log.stat().st_size else ""
    return first.split("): ", 1)[1] if "): " in first else first


def layer_figure(fidelity, path):
    errors, ranks = fidelity["layer_error"], fidelity["kv_rank"]
    layers = range(len(errors))
    figure, left = plt.subplots(figsize=(10, 4))
    left.bar(layers, errors, color="tab:red", alpha=0.7, label="held-out attention-block error")
    left.set_xlabel("layer")
    left.set_ylabel("‖o′ − o‖ / ‖o‖ (held-out)")
    right = left.twinx()
    right.plot(layers, ranks, "o-", color="tab:blue", label="latent size d_kv")
    right.set_ylabel("d_kv (latent dims cached per token)")
    left.set_title(f"r = {fidelity['r']}, cache ratio {fidelity['cache_ratio']:.4f}: error and latent per layer")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=pathlib.Path, help="the pipeline's output folder")
    parser.add_argument("--preset", type=pathlib.Path, required=True, help="the preset the pipeline ran")
    args = parser.parse_args()
    out = args.out
    fidelity_path = out / "fidelity.json"
    if not fidelity_path.exists():
        raise SystemExit(f"{fidelity_path}: missing; run make first")
    fidelity = json.loads(fidelity_path.read_text())
    layer_figure(fidelity, out / "report-layers.png")

    elements, bytes_fp16 = fidelity["cache_elements_per_token"], fidelity["cache_bytes_per_token_fp16"]
    recovered = [(title, json.loads((out / name).read_text())) for name, title in RECOVERED if (out / name).exists()]
    # The training text each recovered model was distilled on, as ekv-uptrain recorded it.
    configs = [out / pathlib.Path(r["compressed"]).name / "config.json" for _, r in recovered]
    texts = sorted({json.loads(c.read_text())["ekv_uptrain"]["summary"]["training_text"]
                    for c in configs if c.exists()})
    extra_head = "".join(f" {title} |" for title, _ in recovered)
    extra_rule = "---|" * len(recovered)

    def extra(key, fmt):
        return "".join(f" {fmt(r[key])} |" for _, r in recovered)

    lines = [
        "# EliteKV compression report",
        "",
        f"Model `{fidelity['model']}`, compressed to `{fidelity['compressed']}` with the preset "
        f"`{args.preset}`. Held-out text `{fidelity['text']}`: {fidelity['windows']} windows × "
        f"{fidelity['window']} tokens ({fidelity['scored_tokens']} scored positions). The compressed "
        "column is training-free; recovered columns are the same export after ekv-uptrain (distilled on "
        f"{', '.join(f'`{t}`' for t in texts) or 'the training corpus'}, never on this text).",
        "",
        "| | original | compressed |" + extra_head,
        "|---|---|---|" + extra_rule,
        f"| perplexity | {fidelity['ppl_original']:.2f} | {fidelity['ppl_compressed']:.2f} |"
        + extra("ppl_compressed", lambda v: f"{v:.2f}"),
        f"| mean KL(original ‖ compressed), nats | | {fidelity['mean_kl']:.3f} |" + extra("mean_kl", lambda v: f"{v:.3f}"),
        f"| top-1 agreement with the original | | {100 * fidelity['top1_agreement']:.1f} % |"
        + extra("top1_agreement", lambda v: f"{100 * v:.1f} %"),
        f"| mean attention-block error per layer | | {fidelity['mean_layer_error']:.3f} |"
        + extra("mean_layer_error", lambda v: f"{v:.3f}"),
        f"| KV-cache elements per token (all layers) | {elements['original']} | {elements['compressed']} |",
        f"| KV-cache bytes per token at fp16 | {bytes_fp16['original']} | {bytes_fp16['compressed']} "
        f"(ratio {fidelity['cache_ratio']:.4f}) |",
        "",
        f"Decoding from the compressed cache against the compressed prefill: `{final_line(out / 'decode.txt')}`",
        "",
    ]
    for name, title in RECOVERED:
        decode = out / name.replace("fidelity-", "decode-").replace(".json", ".txt")
        if decode.exists():
            lines += [f"The same check, {title}: `{final_line(decode)}`", ""]
    engines = [(f, reader, out / "logs" / log) for f, reader, log in ENGINE_FILES if (out / f).exists()]
    if engines:
        lines += ["The recovered model in the formats stock engines serve with a latent cache (exact: "
                  "`ctest -R peer.engine_exports` runs llama.cpp and transformers on these formats):", "",
                  "| file | read by | ekv-export |", "|---|---|---|"]
        for name, reader, log in engines:
            lines.append(f"| `{name}` | {reader} | `{final_line(log) if log.exists() else ''}` |")
        lines.append("")
    lines += [
        "![error and latent size per layer](report-layers.png)",
        "",
    ]
    if (out / "rope-elite.png").exists():
        lines += [f"Elite RoPE chunks (r = {fidelity['r']}) per layer and KV head:", "",
                  "![elite chunks](rope-elite.png)", ""]
    lines += ["## Preset", "", "```toml", args.preset.read_text().rstrip(), "```", "",
              "## Commands", "", "Each step's command, as its tool logged it (logs in `logs/`):", ""]
    for log, made in STEPS:
        if not (out / "logs" / (log + ".log")).exists() and log in ("recover", "compare-recovered", "gguf-uptrained",
                                                                   "deepseek-uptrained"):
            continue  # make recover has not run, or the preset writes no engine format
        lines.append(f"- `{made}`: `{command_of(out / 'logs' / (log + '.log'))}`")
    report = out / "report.md"
    temp = report.with_suffix(".md.tmp")
    temp.write_text("\n".join(lines) + "\n")
    temp.replace(report)
    print(f"final: report={report}")


if __name__ == "__main__":
    main()
