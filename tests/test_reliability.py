"""Reliability: interrupts and kill -9 lose nothing, concurrent writers never corrupt a table, faults are one line.

Also: unsafe or mismatched checkpoints are refused with one line, and no module of the package loads
files through pickle or an unsafe YAML loader.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import compress
from compress.checkpoint import load_model, save_checkpoint
from compress.cli import main
from compress.errors import CheckpointError
from compress.nets import build_model
from compress.recipe.expand import load_recipe
from compress.results import read_done, read_table


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    return d


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(image_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "compress", "train", "--arch", "arcnn", "--images-dir", str(image_dir),
           "--outputs-dir", str(out), "--steps", "100000", "--patch-size", "24", "--batch-size", "2",
           "--threads", "1", "--val-dataset", "", "--ckpt-every", "100000", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "config.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(3.0)  # some steps
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    step = json.loads((out / "state.json").read_text())["step"]
    assert step > 0
    _, meta = load_model(out / "last.safetensors")
    assert json.loads(meta["step"]) == step


def test_pickle_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"state_dict": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused: this file needs pickle"):
        load_model(bad, "arcnn")
    rc = main(["infer", "--arch", "arcnn", "--weights", str(bad), "--image", str(bad), "--outputs-dir",
               str(tmp_path / "o")])
    err = capsys.readouterr()
    assert rc == 2 and "pwned" not in err.out and err.err.count("\n") == 1


def test_reference_pth_state_dict_loads(tmp_path: Path) -> None:
    """A plain tensor state dict saved by the reference implementation loads (weights_only)."""
    ref = build_model("arcnn")
    path = tmp_path / "ARCNN_epoch_0.pth"
    torch.save(ref.state_dict(), path)
    model, _ = load_model(path, "ARCNN")
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_wrong_architecture_and_channels(tmp_path: Path) -> None:
    p = save_checkpoint(tmp_path / "fast.safetensors", build_model("fast_arcnn"), arch="fast_arcnn", channels=3)
    with pytest.raises(CheckpointError, match="for architecture 'fast_arcnn', not 'arcnn'"):
        load_model(p, "arcnn")
    torch.save(build_model("arcnn", 1).state_dict(), tmp_path / "gray.pth")
    with pytest.raises(CheckpointError, match=r"do not fit architecture 'arcnn' with 3 channel\(s\)"):
        load_model(tmp_path / "gray.pth", "arcnn", channels=3)


@pytest.mark.parametrize("content", [b"", b"garbage-not-a-checkpoint" * 10, b"{\"not\": 1}"])
def test_corrupt_or_missing_checkpoint(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        load_model(p, "arcnn")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors", "arcnn")


# --- kill -9 during a sweep, then resume ---------------------------------------------------------------

SWEEP = """\
name: sweep
student: {{arch: fast_arcnn}}
data: {{train: "folder:{imgs}", eval: ["folder:{imgs}"], qualities: [10], fallback: null}}
stages:
  - {{type: finetune, steps: 4, batch_size: 2, patch_size: 32}}
sweep:
  mode: zip
  axes: {{seed: {seeds}, stages.0.steps: {steps}}}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _sweep(tmp_path: Path, image_dir: Path, seeds: list[int], steps: list[int]) -> tuple[Path, list[str]]:
    """A recipe file of ``len(seeds)`` fast variants and their ids, in run order."""
    recipe = tmp_path / "sweep.yaml"
    recipe.write_text(SWEEP.format(imgs=image_dir, seeds=seeds, steps=steps))
    return recipe, [v.id for v in load_recipe(recipe).variants]


def _run_cmd(recipe: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "compress", "run", str(recipe), "--results", str(results), "--threads", "1",
            "--no-progress", *extra]


def _check_tables(folder: Path, ids: list[str]) -> None:
    """Exactly one row per variant (x resolution for cost) in every table, CSV and parquet alike."""
    quality, cost, joined = (read_table(folder / f) for f in ("quality.csv", "cost.csv", "variants.csv"))
    assert sorted(quality["variant"]) == sorted(ids)
    assert sorted(joined["variant"]) == sorted(ids)
    assert sorted(cost["variant"]) == sorted(ids * 3)
    assert not quality.duplicated(["variant", "dataset", "quality", "protocol"]).any()
    import pandas as pd

    for name in ("quality.csv", "cost.csv", "variants.csv"):
        assert len(pd.read_csv(folder / name)) == len(read_table(folder / name)), name
    assert not list(folder.glob(".*.tmp")), "temporary files left beside the tables"


def test_kill_9_mid_sweep_then_resume(
    image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, ids = _sweep(tmp_path, image_dir, [1, 2, 3], [2, 200, 2])  # the second variant trains longest
    results = tmp_path / "results"
    folder = results / "sweep"
    started = folder / ids[1] / "stages" / "0-finetune" / "config.json"
    proc = subprocess.Popen(_run_cmd(recipe, results), env=ENV, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not started.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert started.exists(), proc.stderr.read() if proc.stderr and proc.poll() is not None else "timed out"
        proc.send_signal(signal.SIGKILL)  # mid-training of the second variant: no handler runs
        proc.wait(timeout=60)
    finally:
        proc.kill()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    first_done = (folder / ids[0] / "done.json").read_bytes()
    assert read_done(folder / ids[1]) is None  # the partial folder has artifacts but no done marker
    assert (folder / ids[1] / "stages").is_dir()
    assert sorted(read_table(folder / "quality.csv")["variant"]) == [ids[0]]

    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    assert main(_run_cmd(recipe, results)[3:]) == 0  # the same command again (in this process: no second start-up)
    assert "2 variant(s) run, 1 skipped" in capsys.readouterr().out
    assert (folder / ids[0] / "done.json").read_bytes() == first_done  # finished variant kept, not redone
    for vid in ids[1:]:
        assert read_done(folder / vid) is not None
    state = json.loads((folder / ids[1] / "stages" / "0-finetune" / "state.json").read_text())
    assert state["step"] == 200  # the interrupted variant was redone from the start, completely
    _check_tables(folder, ids)


def test_unreadable_done_marker_means_not_done(tmp_path: Path) -> None:
    (tmp_path / "done.json").write_text('{"run_key": "ab')  # what a torn write would leave (we never make one)
    assert read_done(tmp_path) is None
    (tmp_path / "done.json").write_text("[1, 2]")
    assert read_done(tmp_path) is None


# --- concurrent writers ---------------------------------------------------------------------------------


def test_two_runs_in_parallel_write_one_table(image_dir: Path, tmp_path: Path) -> None:
    recipe, ids = _sweep(tmp_path, image_dir, [1, 2], [2, 2])
    results = tmp_path / "results"
    procs = [subprocess.Popen(_run_cmd(recipe, results, "--only", vid), env=ENV, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for vid in ids]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "1 variant(s) run, 0 skipped" in out
    _check_tables(results / "sweep", ids)


WRITER = """\
import sys
from pathlib import Path
from compress.results import write_tables
folder, who, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    v = f"{who}-{i}"
    q = [{"recipe": "r", "variant": v, "dataset": "d", "quality": q, "protocol": "p", "psnr": 30.0 + i}
         for q in (10, 20)]
    c = [{"recipe": "r", "variant": v, "resolution": r, "params": i} for r in ("480p30", "720p30", "1080p30")]
    write_tables(folder, q, c)
"""


def test_many_writers_interleaved_lose_no_row(tmp_path: Path) -> None:
    """Several processes appending to the same tables at once: every row of every writer is there once."""
    folder = tmp_path / "r"
    writers, n = ["a", "b"], 3
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(folder), w, str(n)], env=ENV,
                              stderr=subprocess.PIPE, text=True) for w in writers]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    quality, cost = read_table(folder / "quality.csv"), read_table(folder / "cost.csv")
    expected = sorted(f"{w}-{i}" for w in writers for i in range(n))
    assert sorted(set(quality["variant"])) == expected and len(quality) == 2 * len(expected)
    assert sorted(set(cost["variant"])) == expected and len(cost) == 3 * len(expected)
    assert len(read_table(folder / "variants.csv")) == len(quality)
    assert not list(folder.glob(".*.tmp"))


# --- numerical faults in the engine ----------------------------------------------------------------------


def test_nan_weights_in_finetune_stop_the_run_with_one_line(
    image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    model = build_model("fast_arcnn")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # a diverged checkpoint
    save_checkpoint(tmp_path / "nan.safetensors", model, arch="fast_arcnn", channels=3)
    recipe = tmp_path / "nan.yaml"
    recipe.write_text(SWEEP.format(imgs=image_dir, seeds=[1], steps=[4]).replace(
        "{arch: fast_arcnn}", f"{{arch: fast_arcnn, checkpoint: {tmp_path / 'nan.safetensors'}}}"))
    rc = main(["run", str(recipe), "--results", str(tmp_path / "results"), "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("compress: error:")]
    assert rc == 2 and "Traceback" not in err
    assert len(errors) == 1 and "non-finite loss (nan) at step 0" in errors[0], err
    folder = tmp_path / "results" / "nan"
    assert not (folder / "quality.csv").exists()
    assert not list(folder.glob("*/done.json"))


# --- safe loading ------------------------------------------------------------------------------------------

UNSAFE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "dill.load", "dill.loads",
    "cloudpickle.load", "cloudpickle.loads", "joblib.load", "marshal.load", "marshal.loads", "shelve.open",
    "yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
    "yaml.full_load_all", "torch.jit.load", "pd.read_pickle", "pandas.read_pickle", "eval", "exec",
}
UNSAFE_NAMES = {"yaml.Loader", "yaml.FullLoader", "yaml.UnsafeLoader", "yaml.CLoader", "yaml.CFullLoader",
                "yaml.CUnsafeLoader"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _is_true(call: ast.Call, keyword: str) -> bool:
    return any(k.arg == keyword and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def unsafe_calls(source: str, filename: str) -> list[str]:
    """``file:line: call`` for every way to run code while loading a file: pickle, unsafe YAML, eval."""
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            bad = name in UNSAFE_CALLS
            bad |= name == "torch.load" and not _is_true(node, "weights_only")
            bad |= name in ("np.load", "numpy.load") and _is_true(node, "allow_pickle")
            if bad:
                found.append((node.lineno, node.col_offset, f"{name}(...)"))
        elif isinstance(node, ast.Attribute) and _dotted(node) in UNSAFE_NAMES:
            found.append((node.lineno, node.col_offset, _dotted(node)))
    return [f"{filename}:{line}: {what}" for line, _, what in sorted(found)]


def test_the_unsafe_call_finder_finds_them() -> None:
    src = ("import torch, yaml, pickle\ntorch.load(p)\ntorch.load(p, weights_only=True)\n"
           "yaml.load(t, Loader=yaml.Loader)\nyaml.safe_load(t)\npickle.loads(b)\nmodel.eval()\neval('1')\n")
    assert [f.split(": ", 1)[1] for f in unsafe_calls(src, "x.py")] == [
        "torch.load(...)", "yaml.load(...)", "yaml.Loader", "pickle.loads(...)", "eval(...)"]


def test_package_loads_nothing_unsafely() -> None:
    """Weights only through safetensors or torch.load(weights_only=True); YAML only through the safe loader."""
    root = Path(compress.__file__).parent
    found = [
        hit for py in sorted(root.rglob("*.py")) for hit in unsafe_calls(py.read_text(), str(py.relative_to(root)))
    ]
    assert found == []


def test_safetensors_whose_header_length_looks_like_pickle(tmp_path: Path) -> None:
    """A safetensors header length whose low byte is 0x80 (a raw pickle's first byte) still loads as safetensors."""
    model = build_model("arcnn")
    for pad in range(300):  # vary the metadata length until the header length's low byte is 0x80
        p = save_checkpoint(tmp_path / "m.safetensors", model, arch="arcnn", channels=3, metadata={"pad": "x" * pad})
        if p.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    loaded, meta = load_model(p)
    assert meta["arch"] == "arcnn"
    assert torch.equal(loaded.state_dict()["last.weight"], model.state_dict()["last.weight"])


def test_drop_variants_removes_their_rows_only(tmp_path: Path) -> None:
    from compress.results import drop_variants, write_tables

    folder = tmp_path / "r"
    for v in ("keep", "stale"):
        write_tables(folder, [{"recipe": "r", "variant": v, "dataset": "d", "quality": 10, "protocol": "p",
                               "psnr": 30.0}],
                     [{"recipe": "r", "variant": v, "resolution": r, "params": 1} for r in ("480p30", "720p30")])
    assert drop_variants(folder, ["stale", "never-there"]) == 3  # 1 quality row + 2 cost rows
    for name in ("quality.csv", "cost.csv", "variants.csv"):
        assert set(read_table(folder / name)["variant"]) == {"keep"}, name
    assert drop_variants(folder, ["stale"]) == 0
