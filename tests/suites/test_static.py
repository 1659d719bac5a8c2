"""The code stays lint-clean, formatted and type-checked: ruff and mypy run as part of the suite,
so the README's one test command is also the whole quality gate (both are in the [test] extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def _run(*args: str) -> None:
    command = [sys.executable, "-m", *args]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=170, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_ruff_lint_and_format() -> None:
    _run("ruff", "check", "actors", "tests", "scripts")
    _run("ruff", "format", "--check", "actors", "tests", "scripts")


def test_mypy_strict() -> None:
    _run("mypy", "actors")
