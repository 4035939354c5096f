"""compress.sysalloc: the malloc settings apply on glibc, can be switched off, and change no number."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compress.sysalloc import tune_malloc

_PROBE = """
import sys, torch
from compress.sysalloc import tune_malloc
ok = tune_malloc()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 3, 3, padding=1))
with torch.inference_mode():
    for _ in range(2):  # 64 x 256 x 512 floats = 32 MiB: above glibc's largest mmap threshold
        y = net(torch.rand(1, 3, 256, 512))
print(int(ok), repr(float(y.double().sum())))
"""


def _probe(env_extra: dict[str, str]) -> tuple[str, str]:
    import os

    env = {**os.environ, **env_extra, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    ok, total = out.stdout.split()
    return ok, total


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc settings")
def test_tuned_and_default_malloc_give_the_same_numbers() -> None:
    ok_tuned, tuned = _probe({"COMPRESS_MALLOC": ""})
    ok_default, default = _probe({"COMPRESS_MALLOC": "default"})
    assert ok_default == "0"  # switched off: nothing applied
    assert ok_tuned == "1"  # this project's machines run glibc
    assert tuned == default


def test_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPRESS_MALLOC", "default")
    assert tune_malloc() is False
