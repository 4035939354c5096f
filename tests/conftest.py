"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

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
