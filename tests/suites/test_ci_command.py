"""CI runs exactly the README's test command, and that command installs every extra the
suite needs (the Daily tests run the real SDK where it works without a network)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.M)
    assert len(commands) == 2, "the README's two commands: the demo, the tests"
    test_command = commands[1]
    assert "'.[test,daily]'" in test_command
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()
    assert ci[-1] == test_command
