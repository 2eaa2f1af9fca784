"""Training windows from a text corpus, tokenized with the export's tokenizer.json.

The file is cut into line-aligned blocks of about 16 KiB; a seeded permutation orders them;
the first blocks of that order give the validation windows, the following ones the training
windows, so the two never share text and a fixed seed always yields the same windows. Only
the blocks needed are tokenized, so a 40 MB corpus costs what the windows cost.
"""
import codecs
import random
import sys

import torch
from tokenizers import Tokenizer

BLOCK_BYTES = 16384


class CorpusError(RuntimeError):
    pass


def invalid_utf8(data):
    """(number of invalid UTF-8 sequences, byte offset of the first): what decode(errors="replace")
    turns into U+FFFD, one per maximal invalid subpart, as ekv's C++ sanitize_utf8 does."""
    found = []

    def count(error):
        found.append(error.start)
        return "\ufffd", error.end

    codecs.register_error("ekv-count-invalid", count)
    data.decode("utf-8", errors="ekv-count-invalid")
    return len(found), (found[0] if found else None)


def _blocks(data):
    blocks, start = [], 0
    while start < len(data):
        end = data.find(b"\n", min(start + BLOCK_BYTES, len(data))) + 1 or len(data)
        blocks.append((start, end))
        start = end
    return blocks


def load_windows(text_path, tokenizer_path, window, train_windows, val_windows, seed):
    """(train [N, window], val [M, window]) int64 token windows, disjoint in text."""
    with open(text_path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise CorpusError(f"{text_path}: the training corpus is empty")
    invalid, first = invalid_utf8(data)
    if invalid:
        print(f"warning: {text_path}: {invalid} sequence{'s are' if invalid > 1 else ' is'} not UTF-8 (the first at "
              f"byte {first}): read as U+FFFD, as every ekv tool and ekv-uptrain read them", file=sys.stderr)
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    order = _blocks(data)
    random.Random(seed).shuffle(order)

    def take(count, blocks):
        windows = []
        while len(windows) < count and blocks:
            start, end = blocks.pop(0)
            text = data[start:end].decode("utf-8", errors="replace")  # as ekv's C++ tools read it
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            windows += [ids[i:i + window] for i in range(0, len(ids) - window + 1, window)]
        return windows[:count]

    val = take(val_windows, order)
    train = take(train_windows, order)
    if len(val) < val_windows or len(train) < train_windows:
        raise CorpusError(f"{text_path}: too small: {len(train)} training and {len(val)} validation windows of "
                          f"{window} tokens, {train_windows} and {val_windows} wanted")
    return torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long)
