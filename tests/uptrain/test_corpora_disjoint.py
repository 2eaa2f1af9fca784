"""The corpora are different texts: neither recovery corpus (train.txt, GCIDE; train-broad.txt,
documentation, code and GCIDE) shares a document with the evaluation corpus (eval.txt, The
Devil's Dictionary) nor with the calibration corpus (calib.txt, The Jargon File). Measured as
13-word shingles (lower-cased words): two documents overlap where they share a run of words, not
where both quote the same famous line, so the test bounds the shared fraction of the held-out
text's shingles and the longest shared run of words."""
import re
import sys

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/peer")
from peer_common import env_path, report  # noqa: E402

N = 13


def words(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return re.findall(r"[a-z0-9']+", f.read().lower())


def shingles(w):
    return {" ".join(w[i:i + N]) for i in range(len(w) - N + 1)}


def longest_shared_run(held_out, train_words, shared):
    """Longest run of consecutive shared shingles in the training text, in words."""
    best = run = 0
    for i in range(len(train_words) - N + 1):
        run = run + 1 if " ".join(train_words[i:i + N]) in shared else 0
        best = max(best, run)
    return best + N - 1 if best else 0


lines, failures = [], []
held_out = {role: shingles(words(env_path(name)))
            for role, name in (("evaluation", "EKV_EVAL_TEXT"), ("calibration", "EKV_CALIB_TEXT"))}
for training in ("EKV_TRAIN_TEXT", "EKV_TRAIN_BROAD_TEXT"):
    train = words(env_path(training))
    train_shingles = shingles(train)
    for role, held in held_out.items():
        shared = held & train_shingles
        fraction = len(shared) / len(held)
        longest = longest_shared_run(held, train, shared)
        message = (f"{env_path(training).rsplit('/', 1)[-1]} vs {role} text: {len(shared)} of {len(held)} {N}-word "
                   f"shingles shared ({100 * fraction:.3f} %), longest shared run {longest} words")
        # A document is hundreds of words; a shared quotation is one sentence.
        (lines if fraction < 0.001 and longest < 60 else failures).append(message)
report(lines, failures)
