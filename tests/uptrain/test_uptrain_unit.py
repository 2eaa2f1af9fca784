"""ekv-uptrain on a tiny synthetic model with a planted optimum (tiny_models.py): the exact
student equals the teacher, a perturbed one returns toward it in both stages, KL of a model
against itself is 0, a NaN loss stops with the last good checkpoint kept, and the seeded
window order is a function of the step alone."""
import copy
import os
import subprocess
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tiny_models import make_pair  # noqa: E402

from elitekv.uptrain import checkpoint, corpus, distill, distributed, layer_local, models, precision, \
    teacher_text  # noqa: E402
from elitekv.uptrain.__main__ import parse_args  # noqa: E402
from elitekv.uptrain.metrics import heldout_fidelity, token_kl  # noqa: E402

torch.set_num_threads(1)


def tokens(n, t, seed):
    return torch.randint(0, 64, (n, t), generator=torch.Generator().manual_seed(seed))


def perturb(student, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in models.trainable_attention(student, models.ATTENTION_PARTS):
            p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=generator))


class PlantedTruth(unittest.TestCase):
    def test_exact_student_matches_teacher(self):
        teacher, student = make_pair()
        ids = tokens(2, 24, 1)
        with torch.no_grad():
            t, s = teacher(input_ids=ids).logits, student(input_ids=ids).logits
        self.assertLess(float((t - s).abs().max() / t.abs().max()), 1e-5)

    def test_kl_of_a_model_against_itself_is_zero(self):
        teacher, _ = make_pair()
        logits = teacher(input_ids=tokens(2, 16, 2)).logits
        self.assertLess(abs(float(token_kl(logits, logits))), 1e-6)
        self.assertGreater(float(token_kl(logits, logits.flip(-1))), 0.01)  # and it sees a difference
        fidelity = heldout_fidelity(teacher, teacher, tokens(2, 16, 3))
        self.assertLess(abs(fidelity["kl"]), 1e-6)
        self.assertEqual(fidelity["top1"], 1.0)

    def test_fused_kl_equals_the_definition_in_value_and_gradient(self):
        generator = torch.Generator().manual_seed(21)
        teacher = 3 * torch.randn(2, 37, 101, generator=generator)  # 74 rows: blocks of 16 and a remainder
        student = (3 * torch.randn(2, 37, 101, generator=generator)).requires_grad_(True)
        fused = token_kl(teacher, student)
        fused.backward()
        plain_student = student.detach().clone().requires_grad_(True)
        log_p, log_q = torch.log_softmax(teacher.double(), -1), torch.log_softmax(plain_student.double(), -1)
        plain = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
        plain.backward()
        self.assertLess(abs(float(fused) - float(plain)), 1e-5 * float(plain))
        self.assertLess(float((student.grad - plain_student.grad).abs().max()), 1e-7)
        self.assertGreater(float(plain_student.grad.abs().max()), 1e-4)  # a gradient that could differ
        with torch.no_grad():  # the held-out checks: no gradient buffer, the same value
            self.assertEqual(float(token_kl(teacher, student)), float(fused))

    def test_stage1_returns_a_perturbed_layer_toward_the_optimum(self):
        teacher, student = make_pair()
        perturb(student, 0.5, seed=4)
        val = tokens(4, 32, 5)
        before = heldout_fidelity(teacher, student, val)["kl"]
        options = layer_local.LayerLocalOptions(steps=150, batch=4, lr=3e-3, warmup=10, eval_every=10,
                                                parts=models.ATTENTION_PARTS)
        records = layer_local.recover_layers(student, teacher, tokens(16, 32, 6), val, options, seed=0)
        for record in records:  # every layer's held-out error fell by at least 4x
            self.assertLess(record["heldout_error_after"], 0.25 * record["heldout_error_before"], record)
        self.assertLess(heldout_fidelity(teacher, student, val)["kl"], 0.5 * before)

    def test_stage1_trains_under_bf16(self):
        # Found this session: under --precision bf16 (the default on CPUs with bf16) stage 1 died
        # at its first step, "element 0 of tensors does not require grad": autocast reused the
        # bf16 copy of a weight cast during the no-grad held-out check before training.
        teacher, student = make_pair()
        perturb(student, 0.5, seed=4)
        attention = models.trainable_attention(student, models.ATTENTION_PARTS)
        precision.lower_frozen(teacher, "bf16")
        precision.lower_frozen(student, "bf16", attention)
        options = layer_local.LayerLocalOptions(steps=40, batch=4, lr=3e-3, warmup=4, eval_every=10,
                                                parts=models.ATTENTION_PARTS, precision="bf16")
        records = layer_local.recover_layers(student, teacher, tokens(16, 32, 6), tokens(4, 32, 5), options, seed=0)
        for record in records:
            self.assertLess(record["heldout_error_after"], 0.5 * record["heldout_error_before"], record)

    def test_stage1_resumed_after_a_layer_ends_bit_for_bit_as_uninterrupted(self):
        teacher, student = make_pair()
        perturb(student, 0.5, seed=11)
        fresh, killed = copy.deepcopy(student), copy.deepcopy(student)
        options = layer_local.LayerLocalOptions(steps=7, batch=3, lr=3e-3, warmup=2, eval_every=3,
                                                parts=models.ATTENTION_PARTS)
        train, val = tokens(8, 24, 12), tokens(3, 24, 13)
        whole = layer_local.recover_layers(student, teacher, train, val, options, seed=4)

        class Killed(Exception):
            pass

        saved = {}

        def kill_after_first_layer(state):  # what ekv-uptrain's checkpoint holds after layer 0
            saved.update(state=state, params={n: p.detach().clone()
                                              for n, p in models.trainable_attention(killed, models.ATTENTION_PARTS)})
            raise Killed

        with self.assertRaises(Killed):
            layer_local.recover_layers(killed, teacher, train, val, options, seed=4, on_layer_done=kill_after_first_layer)
        resumed = fresh  # a new process: the export's model, then the checkpoint's parameters
        checkpoint.restore_params(models.trainable_attention(resumed, models.ATTENTION_PARTS), saved["params"])
        self.assertEqual(saved["state"]["next_layer"], 1)
        records = layer_local.recover_layers(resumed, teacher, train, val, options, seed=4, resume=saved["state"])
        self.assertEqual(records, whole)
        for (name, a), (_, b) in zip(models.trainable_attention(student, models.ATTENTION_PARTS),
                                     models.trainable_attention(resumed, models.ATTENTION_PARTS)):
            self.assertTrue(torch.equal(a, b), name)

    def test_stage2_lowers_heldout_kl(self):
        teacher, student = make_pair()
        perturb(student, 0.5, seed=7)
        val = tokens(4, 32, 8)
        before = heldout_fidelity(teacher, student, val)["kl"]
        params = models.trainable_attention(student, models.ATTENTION_PARTS)
        options = distill.DistillOptions(steps=60, batch=4, accum=2, lr=3e-3, warmup=4, eval_every=20,
                                         checkpoint_every=20)
        with tempfile.TemporaryDirectory() as folder:
            history = distill.distill(student, teacher, train_ids=tokens(128, 32, 9), val_ids=val, params=params,
                                      saved=params, options=options, seed=0, device=torch.device("cpu"),
                                      folder=folder, settings={"test": 1})
        self.assertEqual(history[-1]["step"], 60)
        self.assertLess(heldout_fidelity(teacher, student, val)["kl"], 0.5 * before)

    def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(self):
        teacher, student = make_pair()
        perturb(student, 0.3, seed=10)
        params = models.trainable_attention(student, models.ATTENTION_PARTS)
        options = distill.DistillOptions(steps=4, batch=2, accum=1, lr=1e-3, warmup=1, eval_every=2,
                                         checkpoint_every=2)
        with tempfile.TemporaryDirectory() as folder:
            settings = {"test": 2}
            distill.distill(student, teacher, train_ids=tokens(4, 16, 11), val_ids=tokens(2, 16, 12), params=params,
                            saved=params, options=copy.copy(options), seed=0, device=torch.device("cpu"),
                            folder=folder, settings=settings)
            good = checkpoint.load(folder, settings)
            with torch.no_grad():
                student.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")  # frozen: not restored
            options.steps = 8  # resumed at step 4, the first step's loss is NaN
            with self.assertRaisesRegex(FloatingPointError, "last good checkpoint .* step 4"):
                distill.distill(student, teacher, train_ids=tokens(4, 16, 11), val_ids=tokens(2, 16, 12), params=params,
                                saved=params, options=options, seed=0, device=torch.device("cpu"), folder=folder,
                                settings=settings, resume=True)
            kept = checkpoint.load(folder, settings)
            self.assertEqual(kept["step"], 4)
            for name, value in kept["params"].items():
                self.assertTrue(torch.equal(value, good["params"][name]), name)
                self.assertTrue(bool(torch.isfinite(value).all()), name)

    def test_checkpoint_with_other_settings_is_refused(self):
        teacher, student = make_pair()
        params = models.trainable_attention(student, models.ATTENTION_PARTS)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint.save(folder, 3, params, None, {"lr": 1.0}, [])
            with self.assertRaisesRegex(ValueError, "other settings \\(lr\\)"):
                checkpoint.load(folder, {"lr": 2.0})

    def test_window_order_depends_on_seed_and_step_only(self):
        options = distill.DistillOptions(batch=2, accum=3)
        seen = [distill.window_indices(step, micro, options, 10, seed=5).tolist()
                for step in range(4) for micro in range(3)]
        again = [distill.window_indices(step, micro, options, 10, seed=5).tolist()
                 for step in range(4) for micro in range(3)]
        self.assertEqual(seen, again)
        epoch = sorted(i for batch in seen[:5] for i in batch)  # one epoch: every window once
        self.assertEqual(epoch, list(range(10)))
        self.assertNotEqual(seen, [distill.window_indices(s, m, options, 10, seed=6).tolist()
                                   for s in range(4) for m in range(3)])


class DataParallel(unittest.TestCase):
    """torchrun with 2 CPU processes (gloo, DDP) against one process, the same global batch: both
    stages equal (losses, gradient norms and held-out errors within 1e-6 relative; weights within
    1e-5 of the largest trained weight, Adam's normalized steps amplifying the last bits), the
    order of the sums over processes being the only difference."""

    def run_tiny(self, folder, processes):
        output = os.path.join(folder, f"result-{processes}.pt")
        script = os.path.join(os.path.dirname(__file__), "data_parallel_run.py")
        launcher = distributed.torchrun(processes) if processes > 1 else [sys.executable]
        result = subprocess.run([*launcher, script, output], capture_output=True, text=True, timeout=600)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        return torch.load(output)

    def test_two_processes_equal_one(self):
        with tempfile.TemporaryDirectory() as folder:
            one, two = self.run_tiny(folder, 1), self.run_tiny(folder, 2)
        # Weights against the scale of all trained weights (the planted zero rows of k_b grow from 0,
        # where Adam's normalized steps make a relative comparison per tensor meaningless).
        scale = max(float(value.abs().max()) for value in one["params"].values())
        difference = max(float((two["params"][name] - value).abs().max()) for name, value in one["params"].items())
        self.assertLess(difference, 1e-5 * scale)
        # Adam's steps do not see a gradient's scale: the gradient norms do (a share not scaled
        # by the number of processes would halve them).
        for a, b in zip(one["stage1"], two["stage1"]):
            for key in ("heldout_error_after", "first_gradient_norm"):
                self.assertAlmostEqual(a[key], b[key], delta=1e-6 * a[key])
        self.assertEqual(len(one["stage2"]), 6)
        for a, b in zip(one["stage2"][1:], two["stage2"][1:]):
            for key in ("loss", "gradient_norm"):
                self.assertAlmostEqual(a[key], b[key], delta=1e-6 * a[key])
        trained = one["stage2"][-1]["loss"] < one["stage2"][1]["loss"]
        self.assertTrue(trained, "stage 2 lowered the loss: the comparison is of a run that trained")


class TeacherText(unittest.TestCase):
    """The original writing its own training text: seeded, and sampled from its own distribution."""

    def test_continuations_are_seeded_and_follow_the_teacher(self):
        teacher, _ = make_pair()
        prompts = tokens(4, 6, 41)
        first = teacher_text.continue_prompts(teacher, prompts, 5, torch.Generator().manual_seed(1))
        again = teacher_text.continue_prompts(teacher, prompts, 5, torch.Generator().manual_seed(1))
        self.assertEqual(first.shape, (4, 5))
        self.assertTrue(torch.equal(first, again))
        # 4,000 samples of the first token after one prompt against the teacher's distribution.
        prompt = prompts[:1].expand(4000, -1)
        sampled = teacher_text.continue_prompts(teacher, prompt, 1, torch.Generator().manual_seed(2))[:, 0]
        with torch.no_grad():
            expected = torch.softmax(teacher(input_ids=prompts[:1]).logits[0, -1], dim=-1)
        observed = torch.bincount(sampled, minlength=expected.shape[0]).float() / sampled.shape[0]
        self.assertLess(float((observed - expected).abs().sum() / 2), 0.05)  # total variation
        self.assertGreater(float(expected.max()), 1.5 / expected.shape[0])  # not a uniform teacher


CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


class InvalidUtf8(unittest.TestCase):
    # Issue 33: ekv-uptrain refused what the C++ tools read as U+FFFD (and the shipped training
    # corpus holds 3 such sequences). It now reads them as they do: the counts of
    # Tokenizer.SanitizeUtf8LikePython (tests/unit/test_tokenizer.cpp).
    def test_counts_and_replacements_match_the_cpp_sanitizer(self):
        self.assertEqual(corpus.invalid_utf8(b"abc \xe2\x82\xac"), (0, None))
        self.assertEqual(corpus.invalid_utf8(b"\xe2\x82"), (1, 0))
        self.assertEqual(corpus.invalid_utf8(b"\xff\xfe"), (2, 0))
        self.assertEqual(corpus.invalid_utf8(b"ok \xe2\x28\xa1 \xff"), (3, 3))
        self.assertEqual(corpus.invalid_utf8(b"\xed\xa0\x80"), (3, 0))
        self.assertEqual(b"\xe2\x28\xa1".decode("utf-8", errors="replace"), "\ufffd(\ufffd")


class Presets(unittest.TestCase):
    def args(self, config, section="uptrain", *extra):
        return parse_args(["--config", config, "--config-section", section, "--export", "e", "--model", "m",
                           "--text", config, "-o", "o", "--tools", "t", *extra])

    def test_shipped_sections_parse_and_the_command_line_wins(self):
        preset = os.path.join(CONFIGS, "smollm2-135m-25.toml")
        short, full = self.args(preset), self.args(preset, "recover")
        self.assertEqual((short.layer_steps, short.steps), (0, 16))
        self.assertGreater(full.steps, short.steps)
        self.assertEqual(full.lr, 1.5e-5)
        self.assertEqual(self.args(preset, "uptrain", "--steps", "3").steps, 3)

    def test_a_byte_order_mark_and_spaced_headers_are_read(self):
        with tempfile.TemporaryDirectory() as folder:
            preset = os.path.join(folder, "p.toml")
            with open(preset, "wb") as f:
                f.write(b"\xef\xbb\xbf[ uptrain ]  # short\nsteps = 3\n")
            self.assertEqual(self.args(preset).steps, 3)

    def test_an_unknown_key_or_section_is_an_error(self):
        with tempfile.TemporaryDirectory() as folder:
            preset = os.path.join(folder, "p.toml")
            with open(preset, "w") as f:
                f.write("[uptrain]\nstepz = 3\n")
            with self.assertRaises(SystemExit):
                self.args(preset)
            with self.assertRaises(SystemExit):
                self.args(preset, "nosuch")


if __name__ == "__main__":
    unittest.main(verbosity=2)
