"""The soak script, quick: sessions created and ended in waves leave nothing behind.

``scripts/soak.py --quick`` runs in a process of its own (so that its baseline is its own and
not this test process's), for each provider, and its machine-readable ``RESULT`` line must say
that no thread, socket or actor leaked and no frame was lost.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "soak.py"


def parse_result(output: str) -> dict[str, str]:
    """The fields of the script's last ``RESULT key=value ...`` line."""
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no RESULT line in the output:\n{output[-3000:]}"
    return dict(field.split("=", 1) for field in lines[-1].split()[1:])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("provider", ["twilio", "websocket"])
def test_quick_soak_leaves_nothing_behind(provider: str, tmp_path: Path) -> None:
    """60 sessions in waves of 20, with traffic: exit 0, zero leaked threads, sockets and
    actors, zero frames lost, zero errors; the markdown report is written where asked."""
    out = tmp_path / "soak.md"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--provider", provider, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = completed.stdout + completed.stderr
    result = parse_result(completed.stdout)
    assert result["provider"] == provider
    assert result["sessions"] == "60"
    assert result["leaked_threads"] == "0", output
    assert result["leaked_sockets"] == "0", output
    assert result["leaked_actors"] == "0", output
    assert result["lost"] == "0", output
    assert result["errors"] == "0", output
    assert result["pool_ok"] == "1", output
    assert float(result["rss_growth_mb"]) < 50
    assert result["ok"] == "1", output
    assert completed.returncode == 0, output
    report = out.read_text(encoding="utf-8")
    assert report.startswith(f"# Soak: {provider}")
    assert "Versions: pykka " in report
    assert f"`RESULT provider={provider} " in report


def test_quick_soak_writes_no_report_unless_asked() -> None:
    """``--quick`` alone writes nothing: no SOAK.md appears in the repository."""
    report = ROOT / "SOAK.md"
    existed = report.exists()
    before = report.stat().st_mtime_ns if existed else None
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--provider", "websocket", "--sessions", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert parse_result(completed.stdout)["ok"] == "1"
    assert report.exists() == existed
    if existed:
        assert report.stat().st_mtime_ns == before
