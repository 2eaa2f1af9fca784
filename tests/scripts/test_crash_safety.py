"""Crash safety of every writing tool, proven by killing it: ekv-calibrate, ekv-select-rope,
ekv-jlrd, ekv-export (a folder) and ekv-uptrain's writers (its export folder and checkpoint) run
on the tiny planted model and are killed with SIGKILL at each failpoint (lib/ekv/core/
failpoint.hpp: start, the first and the second dataset or tensor written, commit before the
rename, replaced after it), with and without a previous output. Then: no output under the name,
or the complete previous one; a leftover temporary is refused by a reader with a clear message
and removed by the next run, which succeeds. Disk full (a file-size limit, SIGXFSZ ignored so
writes fail with EFBIG) gives a clear error and leaves nothing."""
import hashlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

BIN = Path(os.environ["EKV_BIN"])
TEST_IO = os.environ["EKV_TEST_IO"]
PYTHON = sys.executable
POINTS = ["start", "write:1", "write:2", "commit", "replaced"]
# The export folder holds two atomically written files (model.safetensors, then decode-pack.h5)
# inside its own temporary: commit:1/replaced:1 are the first file's, :3 the folder's.
FOLDER_POINTS = ["start", "write:1", "write:2", "commit:1", "replaced:1", "commit:3", "replaced:3"]


def digest(path: Path) -> str:
    """sha256 over a file's bytes, or over a folder's names (inside it) and bytes; not the digest
    caches (*.ekv-sha256) that readers such as ekv-info leave beside weights."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*")
                                                 if p.is_file() and p.suffix != ".ekv-sha256")
    for f in files:
        h.update(str(f.relative_to(path) if f != path else "").encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run(cmd, failpoint=None, preexec=None):
    env = dict(os.environ)
    env.pop("EKV_FAILPOINT", None)
    # A fixed created_utc: a replaced output must equal the previous one byte for byte even when
    # the two runs fall in different seconds (they did not always: a flaky comparison).
    env["SOURCE_DATE_EPOCH"] = "1700000000"
    if failpoint:
        env["EKV_FAILPOINT"] = failpoint
    return subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, preexec_fn=preexec)


def small_disk():
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead


class TinyPipeline(unittest.TestCase):
    """The tiny planted model's inputs and artifacts (ekv_test_io tiny-pipeline), once a class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="ekv-crash-")
        cls.dir = Path(cls.tmp.name)
        subprocess.run([TEST_IO, "tiny-pipeline", str(cls.dir / "tiny")], check=True, capture_output=True)
        t = cls.dir / "tiny"
        cls.tools = {  # name -> command without -o
            "calibrate": [BIN / "ekv-calibrate", "--model", t / "tiny.gguf", "--tokens", t / "tokens.safetensors",
                          "--seq-len", "32", "--num-seqs", "6", "--keep-seqs", "2"],
            "select-rope": [BIN / "ekv-select-rope", "--model", t / "tiny.gguf", "--calib", t / "calib.h5",
                            "--r-max", "4"],
            "jlrd": [BIN / "ekv-jlrd", "--model", t / "tiny.gguf", "--rope", t / "rope.h5", "--calib", t / "calib.h5",
                     "--r", "2", "--rank", "12", "--svd", "whitened"],
            "export": [BIN / "ekv-export", "--model", t / "tiny.gguf", "--rope", t / "rope.h5", "--jlrd",
                       t / "export.h5", "--pack-positions", "64"],
        }

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_refused(self, leftover: Path):
        info = run([BIN / "ekv-info", leftover])
        self.assertNotEqual(info.returncode, 0, f"ekv-info accepted the leftover {leftover}")
        self.assertIn("unfinished output", info.stderr)


class CrashSafety(TinyPipeline):
    def output_name(self, tool):
        return "out" if tool == "export" else "out.h5"

    def test_kill_at_every_failpoint(self):
        matrix = []
        for tool, cmd in self.tools.items():
            final_point = "replaced:3" if tool == "export" else "replaced"
            for previous in (False, True):
                for point in FOLDER_POINTS if tool == "export" else POINTS:
                    with self.subTest(tool=tool, point=point, previous=previous):
                        work = Path(tempfile.mkdtemp(dir=self.dir))
                        out = work / self.output_name(tool)
                        tmp = Path(str(out) + ".tmp")
                        before = None
                        if previous:
                            self.assertEqual(run(cmd + ["-o", out]).returncode, 0)
                            before = digest(out)
                        killed = run(cmd + ["-o", out], failpoint=point)
                        self.assertEqual(killed.returncode, -signal.SIGKILL,
                                         f"{tool} did not reach failpoint {point}: {killed.stderr[-500:]}")
                        if point == final_point:  # the new output is in place and complete
                            self.assertEqual(run([BIN / "ekv-info", out]).returncode, 0)
                            if before is not None:  # and, the inputs being the same, equal to the last
                                self.assertEqual(digest(out), before)
                        elif previous:
                            self.assertEqual(digest(out), before, "the previous output changed")
                        else:
                            self.assertFalse(out.exists(), "a killed run left an output")
                        if point.startswith("write") or point.startswith("commit"):
                            self.assertTrue(tmp.exists(), "the kill came before anything was written")
                        if tmp.exists():
                            self.check_refused(tmp)
                        matrix.append((tool, point, previous, tmp.exists()))
                        again = run(cmd + ["-o", out])
                        self.assertEqual(again.returncode, 0, again.stderr[-800:])
                        if matrix[-1][3]:
                            self.assertIn("removing the unfinished output", again.stderr)
                        self.assertFalse(tmp.exists())
                        self.assertEqual(run([BIN / "ekv-info", out]).returncode, 0)
        # The folder's commit is the third: a fourth is never reached.
        work = Path(tempfile.mkdtemp(dir=self.dir))
        self.assertEqual(run(self.tools["export"] + ["-o", work / "out"], failpoint="commit:4").returncode, 0)
        print(f"kill matrix: {len(matrix)} kills, {sum(m[3] for m in matrix)} left a refused temporary")

    def test_disk_full(self):
        for tool, cmd in self.tools.items():
            with self.subTest(tool=tool):
                work = Path(tempfile.mkdtemp(dir=self.dir))
                out = work / self.output_name(tool)
                full = run(cmd + ["-o", out], preexec=small_disk)
                self.assertEqual(full.returncode, 1, full.stderr[-800:])
                self.assertRegex(full.stderr, r"(disk full|File too large)")
                self.assertIn(str(out), full.stderr)  # names the file (its temporary)
                self.assertEqual(list(work.iterdir()), [], "a failed write left files")


UPTRAIN_WRITE = """
import sys, torch
from elitekv.uptrain import export_writer, models
export, output, tools = sys.argv[1:4]
student = models.load_student(export)
with torch.no_grad():
    student.model.layers[0].self_attn.o_proj.weight.mul_(0.5)  # a recovered model differs from the export
export_writer.write_export(export, output, models.trainable_attention(student, models.ATTENTION_PARTS),
                           {"test": True}, tools)
"""

UPTRAIN_CHECKPOINT = """
import sys, torch
from elitekv.uptrain import checkpoint
params = [("w", torch.nn.Parameter(torch.ones(3)))]
checkpoint.save(sys.argv[1], int(sys.argv[2]), params, None, {"s": 1}, [])
"""


class UptrainCrashSafety(TinyPipeline):
    """ekv-uptrain's two writers, run as it runs them (python/elitekv/uptrain), killed the same way."""

    def test_kill_at_every_failpoint(self):
        export = self.dir / "tiny" / "export"
        for previous in (False, True):
            for point in ("uptrain-write", "uptrain-commit", "uptrain-replaced"):
                with self.subTest(point=point, previous=previous):
                    work = Path(tempfile.mkdtemp(dir=self.dir))
                    out, partial, old = work / "recovered", work / "recovered.partial", work / "recovered.old"
                    cmd = [PYTHON, "-c", UPTRAIN_WRITE, export, out, BIN]
                    before = None
                    if previous:
                        self.assertEqual(run(cmd).returncode, 0)
                        before = digest(out)
                    killed = run(cmd, failpoint=point)
                    self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stderr[-800:])
                    if previous and point != "uptrain-replaced":
                        self.assertEqual(digest(out), before)
                    else:  # no output: the previous one, if any, waits complete as .old
                        self.assertFalse(out.exists())
                        if previous:
                            self.assertEqual(digest(old), before)
                    self.assertTrue(partial.exists())
                    self.check_refused(partial)
                    self.assertEqual(run(cmd).returncode, 0)
                    self.assertFalse(partial.exists() or old.exists())
                    self.assertEqual(run([BIN / "ekv-info", out]).returncode, 0)

    def test_checkpoint_kill(self):
        work = Path(tempfile.mkdtemp(dir=self.dir))
        save = [PYTHON, "-c", UPTRAIN_CHECKPOINT, work]
        self.assertEqual(run(save + ["1"]).returncode, 0)
        before = digest(work / "checkpoint.pt")
        self.assertEqual(run(save + ["2"], failpoint="uptrain-checkpoint").returncode, -signal.SIGKILL)
        self.assertEqual(digest(work / "checkpoint.pt"), before)  # the previous checkpoint, whole
        self.assertEqual(run(save + ["2"]).returncode, 0)
        self.assertNotEqual(digest(work / "checkpoint.pt"), before)

    def test_disk_full(self):
        work = Path(tempfile.mkdtemp(dir=self.dir))
        out = work / "recovered"
        full = run([PYTHON, "-c", UPTRAIN_WRITE, self.dir / "tiny" / "export", out, BIN], preexec=small_disk)
        self.assertNotEqual(full.returncode, 0)
        self.assertRegex(full.stderr, r"(File too large|disk full|No space)")
        self.assertEqual(list(work.iterdir()), [], "a failed write left files")


if __name__ == "__main__":
    unittest.main(verbosity=2)
