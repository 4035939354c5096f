"""An interrupted variant resumes its training stages exactly (model, Adam state, distillation adapters)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from compress.checkpoint import read_checkpoint
from compress.recipe.expand import load_recipes
from compress.run import ATTEMPT_FILE, RunOptions, run_variant, variant_dir
from compress.stages import base

RECIPE = """\
name: resume
student: {arch: fast_arcnn, checkpoint: models/absent/best.safetensors, if_missing: init}
teachers: {small: {arch: rdn_s}}
data: {train: embedded, train_limit: 1, eval: [embedded], limit: 1, qualities: [10]}
stages:
  - {type: prune, ratio: 0.25, round_to: 4}
  - {type: distill, teacher: small, steps: 6, batch_size: 2, patch_size: 32, lr: 1.0e-3,
     hints: [{student: base.1, teacher: sfe2}]}
  - {type: finetune, steps: 5, batch_size: 2, patch_size: 32}
  - {type: quantize, backend: brevitas, weight_bits: 8, act_bits: 8, steps: 6, batch_size: 2, patch_size: 32,
     calibration_images: 2}
  - {type: export, atol: 0.01}
"""


@pytest.fixture(autouse=True)
def _small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setattr(base, "STAGE_CKPT_EVERY", 2)


def _variant(tmp_path: Path, backend: str = "brevitas") -> Any:
    path = tmp_path / "resume.yaml"
    path.write_text(RECIPE.replace("backend: brevitas", f"backend: {backend}"))
    (variant,) = [v for f in load_recipes([path], check_files=False) for v in f.variants]
    return variant


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(folder / "weights.safetensors")[0]


@pytest.mark.parametrize(
    ("stage", "folder_name", "resumed_calls", "backend", "atol"),
    [
        (1, "1-distill", [4, 0, 0], "brevitas", 0.0),
        (3, "3-quantize", [4], "nncf", 0.0),
        # brevitas keeps collecting activation statistics for the first 300 training steps and does not save
        # its step counter: a QAT resumed inside that window re-starts with the learned scales, so it ends
        # close to, not equal to, the uninterrupted run (stages checkpoint every 1,000 steps, past the window)
        (3, "3-quantize", [4], "brevitas", 1e-5),
    ],
    ids=["distill-with-adapters", "nncf-qat", "brevitas-qat"],
)
def test_an_interrupted_variant_resumes_its_stages_exactly(
    stage: int, folder_name: str, resumed_calls: list[int], backend: str, atol: float, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variant = _variant(tmp_path, backend)
    clean = RunOptions(results_dir=tmp_path / "clean", progress=False, threads=1)
    assert run_variant(variant, clean, out=lambda _: None).status == "ran"

    # the same variant, stopped in the stage after step 5 (checkpoints at 2 and 4)
    calls: list[int] = []
    real = base.PatchTrainer.batches

    def failing(self: base.PatchTrainer, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(real(self, start), start):
            if self.ctx.stage_index == stage and i == 5:
                raise RuntimeError("power cut")
            yield batch

    opts = RunOptions(results_dir=tmp_path / "cut", progress=False, threads=1)
    monkeypatch.setattr(base.PatchTrainer, "batches", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        run_variant(variant, opts, out=lambda _: None)
    folder = variant_dir(opts.results_dir, variant)
    assert json.loads((folder / ATTEMPT_FILE).read_text())["run_key"]
    assert json.loads((folder / "stages" / folder_name / "state.json").read_text())["step"] == 4
    assert not (folder / "done.json").exists()

    # resumed: the stage continues at step 4 (with its adapters and Adam state); finished stages load; the
    # result is the clean run's, bit for bit
    monkeypatch.setattr(base.PatchTrainer, "batches", lambda self, start: (calls.append(start), real(self, start))[1])
    log: list[str] = []
    assert run_variant(variant, opts, out=log.append).status == "ran"
    assert calls == resumed_calls
    assert any("resuming" in line for line in log)
    assert not (folder / ATTEMPT_FILE).exists()
    theirs, ours = _weights(variant_dir(clean.results_dir, variant)), _weights(folder)
    assert theirs.keys() == ours.keys()
    diff = {k: float((theirs[k].float() - ours[k].float()).abs().max()) for k in theirs}
    assert max(diff.values()) <= atol, {k: d for k, d in diff.items() if d > atol}
    plan = json.loads((folder / "plan.json").read_text())
    assert [plan["stages"][i]["plan"]["steps"] for i in (1, 2, 3)] == [6, 5, 6]


def test_a_finished_stage_is_not_trained_again_and_a_forced_run_starts_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variant = _variant(tmp_path)
    opts = RunOptions(results_dir=tmp_path / "r", progress=False, threads=1)
    real = base.PatchTrainer.batches

    def fail_in_finetune(self: base.PatchTrainer, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.extra_params:
            raise RuntimeError("stopped")
        yield from real(self, start)

    monkeypatch.setattr(base.PatchTrainer, "batches", fail_in_finetune)
    with pytest.raises(RuntimeError, match="stopped"):
        run_variant(variant, opts, out=lambda _: None)
    calls: list[int] = []
    monkeypatch.setattr(base.PatchTrainer, "batches", lambda self, start: (calls.append(start), real(self, start))[1])
    assert run_variant(variant, opts, out=lambda _: None).status == "ran"
    assert calls == [0, 0]  # the finished distillation was loaded: the fine-tuning and the QAT trained

    calls.clear()
    forced = RunOptions(results_dir=opts.results_dir, progress=False, threads=1, force=True)
    assert run_variant(variant, forced, out=lambda _: None).status == "ran"
    assert calls == [0, 0, 0]


def test_a_stage_checkpoint_from_another_starting_model_is_discarded(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    out.mkdir()
    (out / "start.json").write_text(json.dumps({"fingerprint": "other"}))
    (out / "last.safetensors").write_bytes(b"x")
    assert base._keep_or_clear_stage_dir(out, "mine") is False
    assert not (out / "last.safetensors").exists()
    assert json.loads((out / "start.json").read_text()) == {"fingerprint": "mine"}
    (out / "last.safetensors").write_bytes(b"x")
    assert base._keep_or_clear_stage_dir(out, "mine") is True
    m = torch.nn.Conv2d(1, 2, 3)
    assert base.state_fingerprint(m) == base.state_fingerprint(m)
    fp = base.state_fingerprint(m)
    with torch.no_grad():
        m.weight[0, 0, 0, 0] += 1
    assert base.state_fingerprint(m) != fp


def test_variants_share_finished_stages_up_to_the_first_setting_that_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "resume.yaml"
    path.write_text(RECIPE + "sweep:\n  points:\n    - {stages.4.atol: 0.01}\n    - {stages.4.atol: 0.02}\n"
                    "    - {stages.3.steps: 4}\n")
    first, export_only, qat = [v for f in load_recipes([path], check_files=False) for v in f.variants]
    opts = RunOptions(results_dir=tmp_path / "r", progress=False, threads=1)
    calls: list[tuple[int, int]] = []
    real = base.PatchTrainer.batches
    monkeypatch.setattr(base.PatchTrainer, "batches",
                        lambda self, start: (calls.append((self.ctx.stage_index, start)), real(self, start))[1])
    assert run_variant(first, opts, out=lambda _: None).status == "ran"
    assert calls == [(1, 0), (2, 0), (3, 0)]

    # another export check only: every training stage is copied, the weights are the first variant's
    calls.clear()
    assert run_variant(export_only, opts, out=lambda _: None).status == "ran"
    assert calls == []
    a, b = _weights(variant_dir(opts.results_dir, first)), _weights(variant_dir(opts.results_dir, export_only))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plan = json.loads((variant_dir(opts.results_dir, export_only) / "plan.json").read_text())
    assert [plan["stages"][i]["plan"].get("reused_from") for i in (1, 2, 3)] == [first.id] * 3
    assert plan["stages"][1]["plan"]["steps"] == 6
    theirs = json.loads((variant_dir(opts.results_dir, first) / "plan.json").read_text())
    assert plan["stages"][1]["plan"]["wall_s"] == theirs["stages"][1]["plan"]["wall_s"]  # the seconds it took
    done = json.loads((variant_dir(opts.results_dir, export_only) / "done.json").read_text())
    assert any("reused from variant" in n for n in done["notes"])

    # a shorter QAT: distillation and fine-tuning are shared, the QAT trains
    calls.clear()
    assert run_variant(qat, opts, out=lambda _: None).status == "ran"
    assert calls == [(3, 0)]

    # a forced run trains everything again
    calls.clear()
    forced = RunOptions(results_dir=opts.results_dir, progress=False, threads=1, force=True)
    assert run_variant(export_only, forced, out=lambda _: None).status == "ran"
    assert calls == [(1, 0), (2, 0), (3, 0)]
    plan = json.loads((variant_dir(opts.results_dir, export_only) / "plan.json").read_text())
    assert "reused_from" not in plan["stages"][1]["plan"]


def test_the_stage_key_covers_the_start_and_settings_not_what_comes_later(tmp_path: Path) -> None:
    from compress.stages.base import StageContext, stage_key

    variant = _variant(tmp_path)
    r = variant.recipe
    ctx = StageContext(r, tmp_path, stage_index=2)
    k = stage_key(ctx, "fp")
    assert stage_key(ctx, "other") != k
    later = r.model_copy(update={"stages": (*r.stages[:3], r.stages[3].model_copy(update={"steps": 99}), r.stages[4])})
    assert stage_key(StageContext(later, tmp_path, stage_index=2), "fp") == k
    earlier = r.model_copy(update={"stages": (r.stages[0].model_copy(update={"ratio": 0.5}), *r.stages[1:])})
    assert stage_key(StageContext(earlier, tmp_path, stage_index=2), "fp") != k
    evals = r.model_copy(update={"data": r.data.model_copy(update={"limit": 2})})
    assert stage_key(StageContext(evals, tmp_path, stage_index=2), "fp") == k
    train = r.model_copy(update={"data": r.data.model_copy(update={"train_limit": 2})})
    assert stage_key(StageContext(train, tmp_path, stage_index=2), "fp") != k


def test_the_plan_records_a_checkpoint_inside_the_working_directory_relative_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compress.checkpoint import save_checkpoint
    from compress.nets import build_model
    from compress.recipe.schema import Student
    from compress.stages.base import load_student_or_teacher

    save_checkpoint(tmp_path / "models" / "s" / "best.safetensors", build_model("fast_arcnn"), arch="fast_arcnn",
                    channels=3)
    monkeypatch.chdir(tmp_path)
    spec = Student.model_validate({"arch": "fast_arcnn", "checkpoint": "s"})
    assert load_student_or_teacher(spec, 3, "student")[1]["source"] == "models/s/best.safetensors"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # outside the working directory: the absolute path
    path = str(tmp_path / "models" / "s" / "best.safetensors")
    spec = Student.model_validate({"arch": "fast_arcnn", "checkpoint": path})
    assert load_student_or_teacher(spec, 3, "student")[1]["source"] == path
