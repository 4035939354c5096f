"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data sets (``$COMPRESS_DATA``, e.g. /work/shared/data); the test is skipped without them."""
    env = os.environ.get("COMPRESS_DATA")
    if not env:
        pytest.skip("COMPRESS_DATA is not set: this test needs the real data sets (COMPRESS_DATA=/work/shared/data)")
    root = Path(env)
    if not root.is_dir():
        pytest.skip(f"COMPRESS_DATA={env} is not a folder: this test needs the real data sets")
    return root


@pytest.fixture(autouse=True)
def _no_quiet_wait() -> None:
    """Tests time tiny graphs for plausibility, not speed: no waiting for a quiet CPU (tests of the guard
    pass their own :class:`compress.deploy.QuietGuard`)."""
    from compress.deploy import configure_quiet

    configure_quiet(0.0)


@pytest.fixture(scope="module")
def images() -> list[Any]:
    """One embedded training image, decoded once per test module (stage tests feed it to a StageContext)."""
    from compress.data.datasets import open_dataset

    ds = open_dataset("embedded", limit=1)
    return [ds.load(item) for item in ds]
