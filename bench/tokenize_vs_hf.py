#!/usr/bin/env python3
"""Times the `tokenizers` package (HF, Rust) on the texts bench_tokenize --write-texts wrote,
with the tokenizer.json ekv wrote beside them, so both tokenizers see the same bytes and rules.

    bench/tokenize_vs_hf.py DIR

Prints one line per text: seconds, MB/s, tokens/s (single-threaded encode of the whole text).
"""
import pathlib
import sys
import time

from tokenizers import Tokenizer


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    folder = pathlib.Path(sys.argv[1])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    print(f"{'text':<20} {'seconds':>9} {'MB/s':>8} {'tokens/s':>11}")
    for path in sorted(folder.glob("*MB.txt"), key=lambda p: (p.name.split("-")[0], int(p.stem.split("-")[-1][:-2]))):
        text = path.read_bytes().decode("utf-8", errors="replace")
        start = time.perf_counter()
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        seconds = time.perf_counter() - start
        print(f"{path.stem:<20} {seconds:9.3f} {len(text.encode()) / 1e6 / seconds:8.2f} {len(ids) / seconds:11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
