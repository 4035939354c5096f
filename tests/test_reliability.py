"""Reliability: interrupts save a checkpoint, unsafe or mismatched checkpoints are refused with one line."""

from __future__ import annotations

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

from compress.checkpoint import load_model, save_checkpoint
from compress.cli import main
from compress.errors import CheckpointError
from compress.nets import build_model


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
    with pytest.raises(CheckpointError, match="do not fit architecture 'arcnn' with 3 channels"):
        load_model(tmp_path / "gray.pth", "arcnn", channels=3)


@pytest.mark.parametrize("content", [b"", b"garbage-not-a-checkpoint" * 10, b"{\"not\": 1}"])
def test_corrupt_or_missing_checkpoint(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a safetensors file"):
        load_model(p, "arcnn")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors", "arcnn")
