"""Shared helpers of the peer tests: paths from the environment ctest sets, running our tools."""
import os
import subprocess
import sys
import tempfile


def env_path(name):
    value = os.environ.get(name)
    if not value:
        sys.exit(f"FAIL: {name} is not set (run through ctest)")
    return value


def run(*command):
    """Runs one of our executables; a non-zero exit fails the test with its stderr."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(map(str, command))} exited {result.returncode}:\n{result.stderr}")
    return result


def workdir(name):
    return tempfile.mkdtemp(prefix=f"ekv-peer-{name}-")


def report(lines, failures):
    for line in lines:
        print(line)
    if failures:
        print("\n".join(f"FAIL: {f}" for f in failures))
        print(f"{len(lines)} checks, {len(failures)} failed")
        sys.exit(1)
    print(f"all {len(lines)} checks passed")
