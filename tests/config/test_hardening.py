"""The config loader under attack (issue 11, items 6 and 7).

- ``transport-actors check`` never prints any part of a secret: a secret-bearing key is masked
  whole even when its value mixes ``${VAR}`` with literal text or has a ``${X:-default}``;
  a URL written as a template shows its password and secret query values masked.
- ``gateway.secret`` shorter than 16 bytes is refused, naming the key, not the value.
- A header name or value (or subprotocol) with CR or LF is refused at load, naming the header.
- A YAML alias bomb is refused before anything is built from it, in milliseconds and a few MB;
  so are a self-referencing alias, absurd nesting, a number too long to read and a huge file.
- An error message quotes at most ~80 characters of any value, whatever its size.

Everything is the real loader on real files (and the real ``check`` command).
"""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors import ConfigError, cli, load_config
from actors.checks import QUOTE_LIMIT, short_repr
from actors.config import (
    MAX_CONFIG_BYTES,
    MAX_YAML_NODES,
    MIN_SECRET_BYTES,
    WebSocketProviderConfig,
    parse_config,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
LITERAL = "L1teral-part-0f-the-secret"  # written in the file, next to a ${VAR}
DEFAULT = "dEfault-secret-value-77"  # a ${X:-default}
FROM_ENV = "fr0m-the-environment-99"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text), environ=environ or {})
    return caught.value


# ---- item 6: what `check` prints ----

MIXED = f"""\
gateway:
  secret: "{LITERAL}${{PW}}"
providers:
  twilio:
    api_base_url: emulator
    auth_token: "${{UNSET:-{DEFAULT}}}"
    api_key: "${{KEY}}"
    api_secret: "sk_{LITERAL}_${{PW}}"
  voice:
    type: websocket
    url: "wss://bot:{LITERAL}${{PW}}@voice.example.com/ws?token=tk{LITERAL}${{PW}}&lang=${{LANG}}"
  backup:
    type: websocket
    url: "${{BACKUP_URL:-wss://ops:{DEFAULT}@backup.example.com/ws}}"
"""
MIXED_ENV = {"PW": FROM_ENV, "KEY": FROM_ENV, "LANG": "en"}


def test_check_masks_every_part_of_a_secret_written_as_a_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, MIXED)
    config = load_config(path, environ=MIXED_ENV)
    assert config.gateway.secret == LITERAL + FROM_ENV  # the config itself holds the values
    shown = config.redacted()
    assert shown["gateway"]["secret"] == "***"
    twilio = shown["providers"]["twilio"]
    assert twilio["auth_token"] == "***"  # a default is as secret as the expansion
    assert twilio["api_secret"] == "***"
    assert twilio["api_key"] == "${KEY}"  # a bare reference says where, and nothing of what
    voice = shown["providers"]["voice"]["url"]
    assert voice == "wss://bot:***@voice.example.com/ws?token=***&lang=${LANG}"
    backup = shown["providers"]["backup"]["url"]
    assert backup.startswith("${BACKUP_URL:-wss://ops:***@backup.example.com/ws")
    printed = json.dumps(shown)
    for secret in (LITERAL, DEFAULT, FROM_ENV):
        assert secret not in printed
    # The real command, as an operator runs it.
    for name, value in MIXED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UNSET", raising=False)
    monkeypatch.delenv("BACKUP_URL", raising=False)
    assert cli.main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    for secret in (LITERAL, DEFAULT, FROM_ENV):
        assert secret not in out + err


def test_a_bad_value_from_a_template_is_not_quoted_with_its_credentials(tmp_path: Path) -> None:
    text = f'providers: {{p: {{type: websocket, url: "http://u:{LITERAL}${{PW}}@h/"}}}}\n'
    error = _load_error(tmp_path, text, {"PW": FROM_ENV})
    assert error.key_path == "providers.p.url"
    assert LITERAL not in str(error) and FROM_ENV not in str(error)
    assert "(from the environment)" in error.why


@pytest.mark.parametrize("secret", ["short-secret", "x" * (MIN_SECRET_BYTES - 1), "é" * 7])
def test_a_gateway_secret_under_16_bytes_is_refused_without_quoting_it(
    tmp_path: Path, secret: str
) -> None:
    error = _load_error(tmp_path, f"gateway: {{secret: '{secret}'}}\n")
    assert error.key_path == "gateway.secret"
    assert "at least 16 bytes" in error.why
    assert secret not in str(error)
    # The same from the environment.
    error = _load_error(tmp_path, "gateway: {secret: '${GW}'}\n", {"GW": secret})
    assert error.key_path == "gateway.secret" and secret not in str(error)


@pytest.mark.parametrize("secret", ["x" * MIN_SECRET_BYTES, "é" * 8, "a" * 64])
def test_a_gateway_secret_of_16_bytes_or_more_is_accepted(tmp_path: Path, secret: str) -> None:
    config = load_config(_write(tmp_path, "gateway: {secret: '${GW}'}\n"), environ={"GW": secret})
    assert config.gateway.secret == secret


HEADER_CASES = [
    ("value with CRLF", {"X-Token": "${V}"}, {"V": f"{LITERAL}\r\nX-Evil: 1"}, "X-Token"),
    ("value with LF", {"X-Token": "${V}"}, {"V": f"{LITERAL}\nX-Evil: 1"}, "X-Token"),
    ("value with CR", {"X-Token": "${V}"}, {"V": f"{LITERAL}\r"}, "X-Token"),
    ("name with CRLF", {"X-A\r\nX-Evil": "v"}, {}, "X-A\r\nX-Evil"),
    ("name with a colon", {"X-A: b": "v"}, {}, "X-A: b"),
]


@pytest.mark.parametrize(
    ("headers", "environ", "name"),
    [case[1:] for case in HEADER_CASES],
    ids=[case[0] for case in HEADER_CASES],
)
def test_a_config_header_with_cr_or_lf_is_refused_naming_the_header(
    headers: dict[str, str], environ: dict[str, str], name: str
) -> None:
    data = {"providers": {"p": {"type": "websocket", "headers": headers}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=environ)
    error = caught.value
    assert error.key_path == f"providers.p.headers.{name}"
    assert "header" in error.why
    assert LITERAL not in str(error)


@pytest.mark.parametrize("protocol", ["audio v1", "audio\r\nX-Evil: 1", "", "a,b"])
def test_a_config_subprotocol_that_is_no_token_is_refused(protocol: str) -> None:
    data = {"providers": {"p": {"type": "websocket", "subprotocols": ["ok.v1", protocol]}}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.key_path == "providers.p.subprotocols[1]"


def test_a_provider_config_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError) as caught:
        WebSocketProviderConfig(name="p", headers={"X-Token": f"{LITERAL}\r\nX-Evil: 1"})
    assert caught.value.key_path == "providers.p.headers"
    assert "X-Token" in caught.value.why and LITERAL not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        WebSocketProviderConfig(name="p", subprotocols=("ok", "a\r\nb"))
    assert caught.value.key_path == "providers.p.subprotocols[1]"


def test_a_config_url_with_a_space_or_newline_is_refused() -> None:
    for url in ("wss://h.example/a b", "wss://h.example/a\r\nX-Evil: 1"):
        with pytest.raises(ConfigError) as caught:
            parse_config({"providers": {"p": {"type": "websocket", "url": url}}})
        assert caught.value.key_path == "providers.p.url"


def test_good_headers_subprotocols_and_userinfo_urls_still_load() -> None:
    data = {
        "providers": {
            "p": {
                "type": "websocket",
                "url": "wss://bot:${PW}@h.example/ws",
                "headers": {"Authorization": "Bearer ${TOKEN}", "X-Tab": "a\tb"},
                "subprotocols": ["audio.v1", "x-token~1"],
            }
        }
    }
    config = parse_config(data, environ={"PW": FROM_ENV, "TOKEN": FROM_ENV})
    provider = config.provider("p")
    assert isinstance(provider, WebSocketProviderConfig)
    assert provider.headers["X-Tab"] == "a\tb"
    assert provider.subprotocols == ("audio.v1", "x-token~1")


# ---- item 7: YAML alias bombs and other hostile documents ----


def billion_laughs(levels: int) -> str:
    """The classic: each level is nine aliases of the one before (9**levels strings)."""
    lines = ["runtime:", "  ask_timeout_s:", "  - &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"  - &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 12])
def test_a_billion_laughs_document_is_refused_fast_and_small(tmp_path: Path, levels: int) -> None:
    text = billion_laughs(levels)
    assert len(text.encode()) < 500  # a few hundred bytes; 9**7 = 4.8 M strings expanded
    path = _write(tmp_path, text)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ={})
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # main took 4.7 s and 83 MB (traced) for the 7-level one, and grows 9x per level.
    assert elapsed < 0.5, f"{elapsed:.3f} s"
    assert peak < 8 << 20, f"{peak / 1e6:.1f} MB"
    assert f"more than {MAX_YAML_NODES} nodes" in caught.value.why
    assert "alias" in caught.value.why
    assert caught.value.file == str(path)


def test_a_modest_use_of_anchors_and_merge_keys_still_loads(tmp_path: Path) -> None:
    text = """\
supervisor: &policy {max_restarts: 5, within_s: 20.0}
providers:
  a: {type: websocket, url: "ws://a.example/", supervisor: *policy}
  b: {type: websocket, url: "ws://b.example/", supervisor: {<<: *policy, max_restarts: 1}}
"""
    config = load_config(_write(tmp_path, text), environ={})
    b = config.provider("b")
    assert b.supervisor is not None and b.supervisor.max_restarts == 1
    assert b.supervisor.within_s == 20.0


def _expanded_nodes(node: yaml.Node) -> int:
    if isinstance(node, yaml.ScalarNode):
        return 1
    if isinstance(node, yaml.SequenceNode):
        return 1 + sum(_expanded_nodes(child) for child in node.value)
    return 1 + sum(_expanded_nodes(k) + _expanded_nodes(v) for k, v in node.value)


def test_real_configs_are_far_below_the_node_limit() -> None:
    files = [CONFIG_DIR / "transport.yaml", *sorted((CONFIG_DIR / "examples").glob("*.yaml"))]
    for path in files:
        node = yaml.compose(path.read_text(encoding="utf-8"))
        assert node is not None
        # Headroom: a deployment many times the default's size (every provider spelt out) loads.
        assert _expanded_nodes(node) * 20 < MAX_YAML_NODES, path.name
        assert path.stat().st_size * 50 < MAX_CONFIG_BYTES, path.name


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("runtime: &r {ask_timeout_s: *r}\n", "cycle"),
        ("emulator: {numbers: &n [*n]}\n", "cycle"),
        ("runtime: {ask_timeout_s: " + "[" * 3000 + "]" * 3000 + "}\n", "nested too deeply"),
        ("runtime: {inbox_max: " + "9" * 5000 + "}\n", "number too long"),
    ],
    ids=["self-mapping", "self-list", "deep-nesting", "huge-int"],
)
def test_hostile_documents_get_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    error = _load_error(tmp_path, text)
    assert words in error.why
    assert len(str(error)) < 300


def test_a_file_over_the_byte_limit_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert f"larger than {MAX_CONFIG_BYTES} bytes" in caught.value.why


HUGE = "x" * 200_000


@pytest.mark.parametrize(
    ("data", "environ"),
    [
        ({HUGE: 1}, {}),  # an unknown key
        ({"runtime": {HUGE: 1}}, {}),
        ({"runtime": {"ask_timeout_s": HUGE}}, {}),
        ({"runtime": {"ask_timeout_s": [HUGE] * 1000}}, {}),
        ({"providers": {HUGE + "!": {}}}, {}),  # a bad provider name is in the key path
        ({"emulator": {"numbers": {HUGE: "nope"}}}, {}),
        ({"emulator": {"wav": "${" + "V" * 200_000 + "}"}}, {}),  # an unset variable's name
        ({"providers": {"p": {"type": "websocket", "headers": {HUGE + "\n": "v"}}}}, {}),
    ],
    ids=[
        "unknown-key",
        "unknown-nested-key",
        "long-string",
        "long-list",
        "provider-name",
        "media-number",
        "variable-name",
        "header-name",
    ],
)
def test_an_error_quotes_a_huge_value_briefly(
    data: dict[str, Any], environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ=environ)
    assert len(str(caught.value)) < 600, len(str(caught.value))


def test_short_repr_is_bounded_and_cheap_for_a_shared_structure() -> None:
    level: list[Any] = ["lol"] * 9
    for _ in range(12):  # 9**13 leaves if walked: repr() would never finish
        level = [level] * 9
    started = time.perf_counter()
    text = short_repr(level)
    assert time.perf_counter() - started < 0.1
    assert len(text) <= QUOTE_LIMIT and text.endswith("...")
    assert short_repr("abc") == "'abc'"
    assert len(short_repr(10**5000)) <= QUOTE_LIMIT  # past Python's int -> str limit
    assert len(short_repr("y" * 10**6)) == QUOTE_LIMIT
