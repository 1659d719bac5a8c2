"""The benchmark script keeps working: one --quick run, its report checked (not its speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
    assert "| 5 | ours |" in text and "| 5 | naive |" in text and "ours/naive" in text
    assert "pipelined throughput" in text and "idle sessions held" in text
    for impl in ("ours", "naive"):
        row = next(line for line in text.splitlines() if line.startswith(f"| 5 | {impl} |"))
        cells = [cell.strip() for cell in row.split("|")]
        lost, errors = cells[6], cells[8]
        assert (lost, errors) == ("0", "0"), row
