"""The README's library example runs as written (and leaves nothing behind)."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(30)
def test_readme_example_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README has no python example"
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)  # the example loads config/transport.yaml by relative path
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[0], "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = out.getvalue().splitlines()
    assert printed[:3] == ["audio 160 bytes"] * 3
    assert printed[3] == "closed: 1000 done"
    assert "state=<SessionState.CLOSED" in printed[4] and "frames_out=4" in printed[4]
