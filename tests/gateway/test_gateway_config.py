"""GatewayConfig built in code is checked as the YAML loader checks it, naming the field only."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.config import GatewayConfig, load_config
from actors.errors import ConfigError


def test_a_short_secret_built_in_code_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig(secret="short-Pa55")
    assert caught.value.key_path == "gateway.secret"
    assert "16 bytes" in str(caught.value) and "short-Pa55" not in str(caught.value)
    GatewayConfig(secret="x" * 16)  # the bound itself is fine


@pytest.mark.parametrize("key", ["url", "public_url"])
def test_userinfo_in_a_gateway_url_is_refused_clearly(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GatewayConfig(**{key: "wss://alice:hunter2@gw.example/x"})  # type: ignore[arg-type]
    assert caught.value.key_path == f"gateway.{key}"
    assert "user:password@" in caught.value.why and "hunter2" not in str(caught.value)


def test_userinfo_in_a_gateway_url_is_refused_from_yaml_too(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("gateway:\n  public_url: wss://bob:s3cr3tpw@gw.example\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key_path == "gateway.public_url" and "s3cr3tpw" not in str(caught.value)


def test_a_bad_url_built_in_code_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.url"):
        GatewayConfig(url="http://not-a-websocket")
