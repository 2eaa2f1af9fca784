"""What an ekv-uptrain output records about how it was made (config.json ekv_uptrain)."""
import datetime
import hashlib
import os
import subprocess
import sys
from pathlib import Path


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_model(path):
    """A file's sha256, or for a folder the sha256 of its weight files' digests in name order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.safetensors")):
        digest.update(f"{file.name}:{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def git_sha():
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def created_utc():
    """Now, or SOURCE_DATE_EPOCH's time when set (as the C++ tools do): identical runs, identical bytes."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        if not epoch.isdigit():
            raise SystemExit(f"error: SOURCE_DATE_EPOCH={epoch}: must be whole seconds since 1970 (or unset)")
        moment = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
    else:
        moment = datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def record(export, model, text, fingerprint, settings):
    return {
        "producer": "ekv-uptrain",
        "git": git_sha(),
        "command": " ".join(["ekv-uptrain"] + sys.argv[1:]),
        "created_utc": created_utc(),
        "inputs": [
            {"role": "export", "path": str(export), "sha256": sha256_file(Path(export) / "model.safetensors")},
            {"role": "original", "path": str(model), "sha256": sha256_model(model), "fingerprint": fingerprint},
            {"role": "training text", "path": str(text), "sha256": sha256_file(text)},
        ],
        "settings": settings,
    }
