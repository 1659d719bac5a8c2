"""Where the contract tests find the providers' own specifications.

They are not copied into this repository: they live in the project's shared contracts folder,
``<repo>/../shared/contracts/<provider>/`` (CI has it beside the clone), or wherever
``$TRANSPORT_ACTORS_CONTRACTS`` points (the folder that holds ``twilio/``, ``daily/``...).

Where the default folder is absent, a contract test is skipped with a reason that says so and
names where it looked: it did not run, and the summary says it. A folder named by the variable
must hold the spec: a wrong path there fails, since someone asked for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_ENV = "TRANSPORT_ACTORS_CONTRACTS"
DEFAULT_CONTRACTS = ROOT.parent / "shared" / "contracts"


def contracts_folder() -> Path:
    """``$TRANSPORT_ACTORS_CONTRACTS`` if set, else ``<repo>/../shared/contracts``."""
    override = os.environ.get(CONTRACTS_ENV)
    return Path(override) if override else DEFAULT_CONTRACTS


def spec(provider: str, name: str) -> Path:
    """The path of ``<contracts>/<provider>/<name>``; skips the test when the shared folder is
    not there (and fails when ``$TRANSPORT_ACTORS_CONTRACTS`` names a folder without it)."""
    folder = contracts_folder()
    path = folder / provider / name
    if path.is_file():
        return path
    if os.environ.get(CONTRACTS_ENV):
        pytest.fail(f"{CONTRACTS_ENV}={folder}: there is no {provider}/{name} in it", pytrace=False)
    pytest.skip(
        f"the {provider} contract tests did not run: the shared contracts folder was not found "
        f"(looked for {path}; set {CONTRACTS_ENV} to the folder that holds {provider}/{name})"
    )
