"""Sessions for compress. Logic lives in the package; each session installs the project and calls it."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "virtualenv"  # pip: uv does not see the local CPU torch wheel
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ENV = {"NNCF_CI": "1", "TQDM_MININTERVAL": "5" if os.environ.get("CI") else "0.1"}


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest); slow tests need -m slow, e.g. nox -s tests -- -m slow."""
    session.install("-e", ".[dev,ray]")  # ray: the Ray executor's test runs on a local cluster instead of skipping
    session.run("pytest", *session.posargs, env={**ENV, "COMPRESS_REQUIRE_RAY": "1"})  # a broken Ray fails, not skips


@nox.session(python="3.11")
def compress(session: nox.Session) -> None:
    """The main job: run recipes (default: a quick one that finishes on 2 CPU cores) and export Pareto fronts."""
    session.install("-e", ".")
    session.run("compress", "main", *session.posargs, env=ENV)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff and mypy on compress/."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "compress", "tests", "tools", "noxfile.py")
    session.run("mypy", "compress")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks (training speed, input pipeline, inference latency), written to results/bench/."""
    session.install("-e", ".")
    session.run("compress", "bench", *session.posargs, env=ENV)
