"""The README's library example runs as written (and leaves nothing behind)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_block(index: int) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 3, "the README's three python examples"
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)  # the examples load config/transport.yaml by relative path
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[index], "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    return out.getvalue().splitlines()


@pytest.mark.timeout(30)
def test_readme_call_example_runs() -> None:
    printed = _run_block(0)
    assert printed[0] == "call True audio/x-mulaw"
    # The emulator echoes what it played: all 25 frames, before the mark comes back.
    assert printed[1] == "played greeting heard 4000 bytes"


@pytest.mark.timeout(30)
def test_readme_websocket_example_runs() -> None:
    printed = _run_block(1)
    assert printed[:3] == ["audio 160 bytes"] * 3
    assert printed[3] == "closed: 1000 done"
    assert "state=<SessionState.CLOSED" in printed[4] and "frames_out=4" in printed[4]


@pytest.mark.timeout(30)
def test_readme_inbound_example_runs() -> None:
    printed = _run_block(2)
    assert printed == [
        "call from +15550177 to +15550100 inbound",
        "streaming True",
        "heard 1600 bytes",
    ]
