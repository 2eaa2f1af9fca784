"""Training text written by the original model itself: python -m elitekv.uptrain.teacher_text.

Seed prompts are the first tokens of windows of a training corpus (never the evaluation text);
the original continues each by sampling from its own next-token distribution at temperature 1
(no top-k or top-p: the distribution the student is distilled toward), with its KV cache. The
continuations, decoded, one document per paragraph, are a text file for ekv-uptrain --text.
Seeded: the same arguments write the same file."""
import argparse
import os
import sys

import torch
from tokenizers import Tokenizer

from . import corpus, models
from .progress import Progress, log


@torch.no_grad()
def continue_prompts(teacher, prompts, length, generator):
    """[N, P] prompt ids -> [N, length] sampled continuations (temperature 1, the teacher's cache)."""
    out = teacher(input_ids=prompts, use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    tokens = []
    progress = Progress("teacher text", length, "tokens per sequence")
    for _ in range(length):
        probabilities = torch.softmax(logits.float(), dim=-1)
        token = torch.multinomial(probabilities, 1, generator=generator)
        tokens.append(token)
        out = teacher(input_ids=token, past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        progress.advance(1)
    return torch.cat(tokens, dim=1)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m elitekv.uptrain.teacher_text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="the original as an HF folder (ekv-convert; ekv-uptrain caches "
                                                    "one in $EKV_CACHE/teacher-<fingerprint>)")
    p.add_argument("--seeds", required=True, help="the training corpus the prompts come from")
    p.add_argument("--sequences", type=int, default=64, help="continuations to write (default 64)")
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens (default 32)")
    p.add_argument("--length", type=int, default=480, help="tokens sampled per continuation (default 480)")
    p.add_argument("--batch", type=int, default=16, help="continuations sampled together (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--output", "-o", required=True, help="the text file to write (replaced atomically)")
    args = p.parse_args(argv)
    for name in ("sequences", "prompt", "length", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    tokenizer_path = os.path.join(args.teacher, "tokenizer.json")
    # The prompts: the starts of 1,024-token windows of the seed corpus (about four to a 16 KiB
    # block). The first block in the seed's order is skipped: with the same seed, ekv-uptrain holds
    # out its windows of that corpus.
    spread = max(1024, args.prompt)
    windows, _ = corpus.load_windows(args.seeds, tokenizer_path, spread, args.sequences, 2, args.seed)
    prompts = windows[:, :args.prompt]
    teacher = models.load_teacher(args.teacher)
    tokenizer = Tokenizer.from_file(tokenizer_path)
    generator = torch.Generator().manual_seed(args.seed)
    documents = []
    for i in range(0, args.sequences, args.batch):
        batch = prompts[i:i + args.batch]
        continuation = continue_prompts(teacher, batch, args.length, generator)
        documents += [tokenizer.decode(row.tolist()) for row in torch.cat((batch, continuation), dim=1)]
        log(f"teacher text: {len(documents)}/{args.sequences} continuations")
    temporary = args.output + ".tmp"
    with open(temporary, "w", encoding="utf-8", errors="replace") as f:
        f.write("\n\n".join(document.replace("\n\n", "\n") for document in documents) + "\n")
    os.replace(temporary, args.output)
    log(f"{args.output}: {args.sequences} continuations of {args.prompt} + {args.length} tokens from {args.seeds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
