"""The contract tests find the providers' specs outside the repository (tests/specs.py), and say
plainly when they did not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import specs


def test_an_absent_shared_folder_skips_and_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(specs.CONTRACTS_ENV, raising=False)
    monkeypatch.setattr(specs, "DEFAULT_CONTRACTS", tmp_path / "shared" / "contracts")
    with pytest.raises(pytest.skip.Exception) as skipped:
        specs.spec("twilio", "twilio_api_v2010.json")
    reason = str(skipped.value)
    assert "did not run" in reason
    assert "contracts folder was not found" in reason
    assert str(tmp_path / "shared" / "contracts" / "twilio" / "twilio_api_v2010.json") in reason
    assert specs.CONTRACTS_ENV in reason


def test_the_variable_names_the_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "twilio").mkdir()
    (tmp_path / "twilio" / "api.json").write_text("{}")
    monkeypatch.setenv(specs.CONTRACTS_ENV, str(tmp_path))
    assert specs.spec("twilio", "api.json") == tmp_path / "twilio" / "api.json"
    # Asked for by name and not there: a mistake to fix, not a test to skip.
    with pytest.raises(pytest.fail.Exception, match=r"no daily/api\.json"):
        specs.spec("daily", "api.json")


def test_the_default_is_beside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(specs.CONTRACTS_ENV, raising=False)
    root = Path(__file__).resolve().parent.parent
    assert specs.contracts_folder() == root.parent / "shared" / "contracts"
