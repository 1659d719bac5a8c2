"""The benchmark script keeps working: one --quick run, its report checked (not its speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_bench_quick_runs_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    command = [sys.executable, "scripts/bench.py", "--quick", "--output", str(report)]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False
    )
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert text in result.stdout  # printed and written alike
    assert "| 5 | ours |" in text and "| 5 | raw |" in text and "ours/raw" in text
    assert "pipelined throughput" in text and "create_session" in text
    ours = next(line for line in text.splitlines() if line.startswith("| 5 | ours |"))
    lost, errors = ours.split("|")[7:9]
    assert (lost.strip(), errors.strip()) == ("0", "0")
