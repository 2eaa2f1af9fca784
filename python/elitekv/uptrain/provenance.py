"""What an ekv-uptrain output records about how it was made (config.json ekv_uptrain)."""
import datetime
import hashlib
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


def record(export, model, text, fingerprint, settings):
    return {
        "producer": "ekv-uptrain",
        "git": git_sha(),
        "command": " ".join(["ekv-uptrain"] + sys.argv[1:]),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inputs": [
            {"role": "export", "path": str(export), "sha256": sha256_file(Path(export) / "model.safetensors")},
            {"role": "original", "path": str(model), "sha256": sha256_model(model), "fingerprint": fingerprint},
            {"role": "training text", "path": str(text), "sha256": sha256_file(text)},
        ],
        "settings": settings,
    }
