#!/usr/bin/env python3
"""Sharding on a real scheduler: a one-node Slurm cluster (Debian's slurmctld, slurmd and munge,
configured here in a temporary folder, loopback only) runs scripts/slurm-shards.sh (calibration
slices and RoPE layer ranges as array jobs, then their merges) on the default model; `make -j2
SHARDS=.. ROPE_SHARDS=..` runs the same shards on one machine. Both must give the unsharded files:
the same sampled tokens, offsets and stored inputs bit for bit, the same elite chunks, and the
same sums up to the order of floating-point addition. Skipped (exit 77, reason printed) only when
the Slurm daemons cannot start here.
"""
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("EKV_BIN", ROOT / "build" / "apps"))
SKIP = 77

# Small enough for seconds per job, large enough for 4 slices of whole micro-batches.
PRESET = """
[calibrate]
seq-len = 128
num-seqs = 8
keep-seqs = 3
micro-batch = 2
seed = 5

[select-rope]
method = "elite"
objective = "l1"
r-max = 4
"""


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command, **kwargs):
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:])
    check(result.returncode == 0, f"{command[0]} exited {result.returncode}")
    return time.monotonic() - started


class Cluster:
    """munged, slurmctld and slurmd under one temporary folder, stopped on exit."""

    def __init__(self, folder):
        self.folder = folder
        self.env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))

    def start(self):
        f = self.folder
        for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
            if not shutil.which(tool) and not pathlib.Path("/usr/sbin", tool).exists():
                return f"{tool} is not installed (scripts/setup.sh installs slurmctld, slurmd, slurm-client, munge)"
        (f / "state").mkdir()
        (f / "spool").mkdir()
        (f / "munge.key").write_bytes(os.urandom(1024))
        (f / "munge.key").chmod(0o400)
        munged = subprocess.run(
            ["/usr/sbin/munged", f"--key-file={f}/munge.key", f"--socket={f}/munge.sock", f"--pid-file={f}/munged.pid",
             f"--log-file={f}/munged.log", f"--seed-file={f}/munged.seed", "--force"], capture_output=True, text=True)
        if munged.returncode != 0:
            return "munged cannot start: " + munged.stderr.strip()
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        (f / "slurm.conf").write_text(f"""
ClusterName=ekvtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={f}/munge.sock
CredType=cred/munge
StateSaveLocation={f}/state
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/slurmctld.pid
SlurmdPidFile={f}/slurmd.pid
SlurmctldLogFile={f}/slurmctld.log
SlurmdLogFile={f}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=ekvnode NodeHostname={socket.gethostname()} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=ekv Nodes=ekvnode Default=YES MaxTime=INFINITE State=UP
""")
        for daemon in (["/usr/sbin/slurmctld", "-i"], ["/usr/sbin/slurmd", "-N", "ekvnode"]):
            started = subprocess.run(daemon, env=self.env, capture_output=True, text=True)
            if started.returncode != 0:
                return f"{daemon[0]} cannot start: {started.stderr.strip()}"
        for _ in range(60):  # the node registers within seconds
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                return None
            time.sleep(0.5)
        return "the Slurm node did not become idle in 30 s: " + (f / "slurmd.log").read_text()[-2000:]

    def stop(self):
        for name in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            pid_file = self.folder / name
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), 15)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(1)


def same_calib(a, b, label):
    with h5py.File(a) as x, h5py.File(b) as y:
        for name in ("tokens", "offsets", "kept_sequences"):
            check(np.array_equal(x[name][()], y[name][()]), f"{label}: /{name} differs from the unsharded run")
        for attribute in ("num_seqs", "keep_seqs", "seq_len", "seeds", "layer_begin", "layer_end"):
            check(x.attrs[attribute] == y.attrs[attribute], f"{label}: attribute {attribute} differs")
        check("shard" not in y.attrs, f"{label}: the merged file still says it is a shard")
        for layer in x["layers"]:
            for name in ("gram", "q_norm_sum", "k_norm_sum"):
                u, v = x["layers"][layer][name][()], y["layers"][layer][name][()]
                gap = np.abs(u - v).max() / np.abs(u).max()
                check(gap <= 1e-12, f"{label}: layer {layer} {name} differs by {gap:.2e} (relative)")
            check(np.array_equal(x["layers"][layer]["x"][()], y["layers"][layer]["x"][()]),
                  f"{label}: layer {layer} stored inputs differ")


def same_rope(a, b, label):
    with h5py.File(a) as x, h5py.File(b) as y:
        check(sorted(x["layers"]) == sorted(y["layers"]), f"{label}: layers differ")
        for layer in x["layers"]:
            for name in ("elite", "order"):
                check(np.array_equal(x["layers"][layer][name][()], y["layers"][layer][name][()]),
                      f"{label}: layer {layer} {name} differs from the unsharded search")
            check(np.allclose(x["layers"][layer]["distance"][()], y["layers"][layer]["distance"][()], rtol=1e-9),
                  f"{label}: layer {layer} distances differ")


def main():
    model = subprocess.run([ROOT / "scripts" / "fetch-model.sh"], capture_output=True, text=True).stdout.strip()
    corpora = subprocess.run([ROOT / "scripts" / "make-corpora.sh"], capture_output=True, text=True).stdout.strip()
    check(model and corpora, "scripts/fetch-model.sh or make-corpora.sh printed no path")
    with tempfile.TemporaryDirectory(prefix="ekv-slurm-") as tmp:
        tmp = pathlib.Path(tmp)
        preset = tmp / "small.toml"
        preset.write_text(PRESET)
        cluster = Cluster(tmp / "cluster")
        (tmp / "cluster").mkdir()
        reason = cluster.start()
        if reason:
            cluster.stop()
            print("SKIPPED:", reason)
            return SKIP
        try:
            single = tmp / "single"
            single.mkdir()
            t_single = run([BIN / "ekv-calibrate", "--model", model, "--text", f"{corpora}/calib.txt", "--config", preset,
                            "-o", single / "calib.h5", "--quiet"])
            t_single += run([BIN / "ekv-select-rope", "--model", model, "--calib", single / "calib.h5", "--config", preset,
                             "-o", single / "rope-elite-l1.h5", "--quiet"])

            t_slurm = run([ROOT / "scripts" / "slurm-shards.sh", "--out", tmp / "slurm", "--preset", preset,
                           "--shards", "4", "--rope-shards", "3"], env=cluster.env)
            same_calib(single / "calib.h5", tmp / "slurm" / "calib.h5", "Slurm array")
            same_rope(single / "rope-elite-l1.h5", tmp / "slurm" / "rope-elite-l1.h5", "Slurm array")
            logs = sorted(p.name for p in (tmp / "slurm" / "logs").glob("slurm-*.log"))
            check(len(logs) == 4 + 1 + 3 + 1, f"expected 9 job logs, found {logs}")

            # A failed shard fails the run (sbatch --wait alone says 0 for a job its failed
            # dependency cancelled) and leaves no merged file.
            bad = tmp / "bad.toml"
            bad.write_text(PRESET.replace("num-seqs = 8", "num-seqs = 2"))
            failed = subprocess.run([ROOT / "scripts" / "slurm-shards.sh", "--out", tmp / "bad", "--preset", bad,
                                     "--shards", "2", "--rope-shards", "2"], env=cluster.env, capture_output=True, text=True)
            check(failed.returncode != 0 and "FAILED" in failed.stderr and "CANCELLED" in failed.stderr,
                  f"a failing shard must fail the run, naming the failed and cancelled jobs: {failed.stderr[-2000:]}")
            check(not (tmp / "bad" / "calib.h5").exists(), "a failed sharded run left a merged calib.h5")

            t_make = run(["make", "-C", ROOT, "-j2", f"OUT={tmp / 'make'}", f"PRESET={preset}", "SHARDS=4",
                          "ROPE_SHARDS=3", f"{tmp / 'make'}/rope-elite-l1.h5"])
            same_calib(single / "calib.h5", tmp / "make" / "calib.h5", "make -j2")
            same_rope(single / "rope-elite-l1.h5", tmp / "make" / "rope-elite-l1.h5", "make -j2")
        finally:
            cluster.stop()
    print(f"ok: Slurm array (4 calibration slices, 3 layer ranges) and make -j2 equal the unsharded run "
          f"(walls: unsharded {t_single:.1f} s, Slurm {t_slurm:.1f} s, make -j2 {t_make:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
