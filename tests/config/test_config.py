"""Tests of actors.config: YAML -> validated, frozen config objects."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from actors.config import (
    RuntimeConfig,
    TransportConfig,
    TwilioProviderConfig,
    WebSocketProviderConfig,
    default_config,
    load_config,
    parse_config,
)
from actors.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT_YAML = ROOT / "config" / "transport.yaml"
EXAMPLE_YAML = ROOT / "config" / "examples" / "websocket.yaml"
SECRET = "s3cr3t-Value-42"


def ws_provider(config: TransportConfig, name: str) -> WebSocketProviderConfig:
    provider = config.provider(name)
    assert isinstance(provider, WebSocketProviderConfig)
    return provider


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transport.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(data: object, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="t.yaml", environ=environ or {})
    return info.value


# ---- defaults and the shipped files ----


def test_transport_yaml_is_exactly_the_default_config() -> None:
    assert load_config(TRANSPORT_YAML, environ={}) == default_config()
    assert default_config() == TransportConfig()


def test_transport_yaml_spells_out_every_key_with_a_comment() -> None:
    data = yaml.safe_load(TRANSPORT_YAML.read_text(encoding="utf-8"))
    assert data == default_config().redacted()
    for line in TRANSPORT_YAML.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"no comment on: {line!r}"


def test_default_values() -> None:
    config = default_config()
    assert config.runtime.max_message_bytes == 1_048_576
    assert config.runtime.ping_interval_s == 10.0
    assert config.supervisor.max_restarts == 3
    assert list(config.providers) == [
        "websocket",
        "twilio",
        "daily",
        "telnyx",
        "plivo",
        "vonage",
        "exotel",
    ]
    twilio = config.provider("twilio")
    assert isinstance(twilio, TwilioProviderConfig)
    assert twilio.api_base_url == "emulator"  # no credentials by default
    assert config.provider("websocket") == WebSocketProviderConfig(name="websocket")


def test_example_websocket_yaml_loads() -> None:
    config = load_config(EXAMPLE_YAML, environ={"ECHO_TOKEN": SECRET})
    echo = ws_provider(config, "echo")
    assert echo.type == "websocket"
    assert echo.url == "wss://echo.example.com/voice"
    assert dict(echo.headers) == {"X-Echo-Token": SECRET}
    assert echo.subprotocols == ("audio.v2", "audio.v1")
    assert config.runtime.connect_timeout_s == 3.0
    assert config.source == str(EXAMPLE_YAML)
    assert SECRET not in repr(config)
    assert SECRET not in str(config.redacted())


def test_example_websocket_yaml_needs_its_token() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE_YAML, environ={})
    assert info.value.key_path == "providers.echo.headers.X-Echo-Token"
    assert info.value.why == "environment variable 'ECHO_TOKEN' is not set"
    assert info.value.file == str(EXAMPLE_YAML)


def test_example_twilio_yaml_takes_its_secrets_from_the_environment() -> None:
    path = ROOT / "config" / "examples" / "twilio.yaml"
    sid = "AC" + "ab" * 16
    environ = {
        "TWILIO_ACCOUNT_SID": sid,
        "TWILIO_AUTH_TOKEN": SECRET,
        "GATEWAY_SECRET": "g" + SECRET,
    }
    config = load_config(path, environ=environ)
    twilio = config.provider("twilio")
    assert isinstance(twilio, TwilioProviderConfig)
    assert (twilio.account_sid, twilio.auth_token) == (sid, SECRET)
    assert twilio.from_number == "+15550199"
    assert twilio.status_callback is None  # an empty default means "not set"
    assert config.gateway.public_url == "wss://media.example.com"
    assert config.gateway.twilio_auth_token == SECRET
    for shown in (repr(config), str(config.redacted())):
        assert SECRET not in shown
    assert config.redacted()["providers"]["twilio"]["auth_token"] == "${TWILIO_AUTH_TOKEN}"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={**environ, "TWILIO_ACCOUNT_SID": "AC123"})
    assert info.value.key_path == "providers.twilio.account_sid"
    assert "AC followed by 32 hex digits" in info.value.why


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        ({"gateway": {"listen": "8765"}}, "gateway.listen", "host:port"),
        ({"gateway": {"embedded": "yes"}}, "gateway.embedded", "true or false"),
        ({"emulator": {"media": "music"}}, "emulator.media", "echo, tone, wav, silence"),
        ({"emulator": {"numbers": {"+1555": "jazz"}}}, "emulator.numbers", "'+1555'"),
        (
            {"providers": {"t": {"type": "twilio", "api_base_url": "ftp://x"}}},
            "providers.t.api_base_url",
            "http",
        ),
        ({"providers": {"t": {"type": "twilio", "retries": -1}}}, "providers.t.retries", ">= 0"),
    ],
)
def test_gateway_emulator_and_twilio_settings_are_validated(
    data: dict[str, object], path: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key_path == path
    assert words in info.value.why


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_defaults(tmp_path: Path, text: str) -> None:
    config = load_config(write(tmp_path, text), environ={})
    assert config == default_config()
    assert config.source == str(tmp_path / "transport.yaml")


def test_null_section_gives_its_defaults() -> None:
    assert parse_config({"runtime": None, "supervisor": {}}) == default_config()


# ---- files and YAML syntax ----


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.file == str(missing)
    assert "cannot read the file" in info.value.why
    assert str(missing) in str(info.value)


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "runtime:\n  ask_timeout_s: 1.0\n  inbox_max: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.file == str(path)
    assert error.why.startswith("invalid YAML at line 4, column 1: ")
    assert "expected ',' or ']'" in error.why
    assert str(error).startswith(f"{path}: invalid YAML at line 4")


def test_malformed_yaml_does_not_quote_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"providers:\n  echo:\n    headers: {{X-Token: {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "invalid YAML at line" in info.value.why
    assert SECRET not in str(info.value)
    assert info.value.__suppress_context__  # the YAMLError (which quotes the line) is dropped


@pytest.mark.parametrize("data", [[1, 2], "runtime", 3])
def test_top_level_must_be_a_mapping(data: object) -> None:
    error = config_error(data)
    assert error.key_path == ""
    assert error.why.startswith("expected a mapping at the top level, got ")
    assert str(error).startswith("t.yaml: expected a mapping")


# ---- types, constraints, unknown keys ----


def test_wrong_type_names_the_key_path() -> None:
    error = config_error({"runtime": {"ask_timeout_s": "abc"}})
    assert error.file == "t.yaml"
    assert error.key_path == "runtime.ask_timeout_s"
    assert error.why == "expected a number of seconds (float), got 'abc' (str)"
    assert str(error) == (
        "t.yaml: runtime.ask_timeout_s: expected a number of seconds (float), got 'abc' (str)"
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("runtime", "inbox_max", True, "expected a whole number (int), got True (bool)"),
        ("runtime", "inbox_max", 2.5, "expected a whole number (int), got 2.5 (float)"),
        ("runtime", "max_message_bytes", 3.0, "expected a number of bytes (int), got 3.0 (float)"),
        ("runtime", "ping_timeout_s", False, "expected a number of seconds (float), got False"),
        ("runtime", "ping_timeout_s", None, "expected a number of seconds (float), got None"),
        ("supervisor", "backoff_multiplier", [2], "expected a number (float), got [2] (list)"),
        ("runtime", "ping_timeout_s", float("inf"), "expected a finite number"),
    ],
)
def test_number_types_are_strict(section: str, key: str, value: object, why: str) -> None:
    error = config_error({section: {key: value}})
    assert error.key_path == f"{section}.{key}"
    assert error.why.startswith(why)


def test_float_fields_accept_ints() -> None:
    config = parse_config({"runtime": {"ask_timeout_s": 7}, "supervisor": {"within_s": 1}})
    assert config.runtime.ask_timeout_s == 7.0
    assert isinstance(config.runtime.ask_timeout_s, float)
    assert isinstance(config.supervisor.within_s, float)


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("runtime", "connect_timeout_s", 0, "must be > 0, got 0 (int)"),
        ("runtime", "outbound_max", -5, "must be > 0, got -5 (int)"),
        ("runtime", "ping_interval_s", -1.0, "must be >= 0 (0 disables pings), got -1.0 (float)"),
        ("supervisor", "max_restarts", -1, "must be >= 0, got -1 (int)"),
        ("supervisor", "backoff_multiplier", 0.5, "must be >= 1, got 0.5 (float)"),
    ],
)
def test_constraints_are_named(section: str, key: str, value: object, why: str) -> None:
    error = config_error({section: {key: value}})
    assert error.key_path == f"{section}.{key}"
    assert error.why == why


def test_boundary_values_are_accepted() -> None:
    config = parse_config(
        {
            "runtime": {"ping_interval_s": 0},
            "supervisor": {"max_restarts": 0, "backoff_multiplier": 1},
        }
    )
    assert config.runtime.ping_interval_s == 0.0
    assert config.supervisor.max_restarts == 0
    assert config.supervisor.backoff_multiplier == 1.0


def test_unknown_key_suggests_the_closest() -> None:
    error = config_error({"runtime": {"ping_intervall_s": 3}})
    assert error.key_path == "runtime.ping_intervall_s"
    assert error.why == "unknown key 'ping_intervall_s'; did you mean 'ping_interval_s'?"


def test_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    error = config_error({"supervisor": {"zzz": 1}})
    assert error.key_path == "supervisor.zzz"
    assert error.why == (
        "unknown key 'zzz'; expected one of: max_restarts, within_s, backoff_initial_s, "
        "backoff_max_s, backoff_multiplier, backoff_jitter, reset_after_s, restart, "
        "reconnect_window_s"
    )


def test_unknown_key_at_top_level_and_in_a_provider() -> None:
    assert config_error({"runtim": {}}).why == "unknown key 'runtim'; did you mean 'runtime'?"
    error = config_error({"providers": {"echo": {"type": "websocket", "subprotocol": []}}})
    assert error.key_path == "providers.echo.subprotocol"
    assert error.why == "unknown key 'subprotocol'; did you mean 'subprotocols'?"
    assert config_error({"providers": {"echo": {"type": "websocket", "name": "x"}}}).key_path == (
        "providers.echo.name"
    )


def test_section_must_be_a_mapping() -> None:
    error = config_error({"runtime": [1]})
    assert error.key_path == "runtime"
    assert error.why == "expected a mapping, got [1] (list)"


# ---- providers ----


def test_provider_type_defaults_to_a_known_name() -> None:
    config = parse_config({"providers": {"websocket": {"url": "ws://127.0.0.1:9000/x"}}})
    provider = ws_provider(config, "websocket")
    assert provider.type == "websocket"
    assert provider.url == "ws://127.0.0.1:9000/x"


def test_provider_needs_a_type_when_its_name_is_not_one() -> None:
    error = config_error({"providers": {"echo": {"url": "ws://h"}}})
    assert error.key_path == "providers.echo.type"
    assert error.why.startswith("missing")
    assert error.why.endswith(
        "expected one of: websocket, twilio, daily, vonage, exotel, telnyx, plivo"
    )


def test_unknown_provider_type() -> None:
    error = config_error({"providers": {"phone": {"type": "sip"}}})
    assert error.key_path == "providers.phone.type"
    assert error.why == (
        "unknown provider type 'sip'; expected one of: "
        "websocket, twilio, daily, vonage, exotel, telnyx, plivo"
    )


def test_provider_url_must_be_websocket() -> None:
    error = config_error({"providers": {"echo": {"type": "websocket", "url": "http://h/x"}}})
    assert error.key_path == "providers.echo.url"
    assert error.why == "expected a ws:// or wss:// URL with a host, got 'http://h/x' (str)"
    assert config_error({"providers": {"websocket": {"url": "wss://"}}}).key_path == (
        "providers.websocket.url"
    )


def test_empty_url_means_not_set() -> None:
    config = parse_config({"providers": {"websocket": {"url": "${ECHO_URL:-}"}}}, environ={})
    assert ws_provider(config, "websocket").url is None


def test_list_item_key_path() -> None:
    error = config_error({"providers": {"websocket": {"subprotocols": ["a", 3]}}})
    assert error.key_path == "providers.websocket.subprotocols[1]"
    assert error.why == "expected a string (str), got 3 (int); quote it"
    error = config_error({"providers": {"websocket": {"subprotocols": "a"}}})
    assert error.key_path == "providers.websocket.subprotocols"
    assert error.why == "expected a list of strings, got 'a' (str)"


def test_bad_provider_name() -> None:
    error = config_error({"providers": {"a.b": {"type": "websocket"}}})
    assert error.key_path == "providers.a.b"
    assert "letters, digits" in error.why


def test_provider_lookup() -> None:
    config = parse_config(
        {"providers": {"echo": {"type": "websocket"}, "voice": {"type": "websocket"}}},
        source="t.yaml",
    )
    assert config.provider("voice").name == "voice"
    with pytest.raises(ConfigError) as info:
        config.provider("ecko")
    assert info.value.key_path == "providers.ecko"
    assert info.value.file == "t.yaml"
    assert info.value.why == (
        "unknown provider 'ecko'; configured providers: echo, voice; did you mean 'echo'?"
    )
    with pytest.raises(ConfigError) as info:
        config.provider("zzz")
    assert info.value.why == "unknown provider 'zzz'; configured providers: echo, voice"


def test_empty_providers_is_allowed_but_has_no_provider() -> None:
    config = parse_config({"providers": {}})
    assert dict(config.providers) == {}
    with pytest.raises(ConfigError, match="configured providers: \\(none\\)"):
        config.provider("websocket")


# ---- environment expansion ----


def test_missing_env_var_names_variable_and_key_path() -> None:
    error = config_error({"providers": {"websocket": {"url": "wss://${HOST}/x"}}})
    assert error.key_path == "providers.websocket.url"
    assert error.why == "environment variable 'HOST' is not set"


def test_env_expansion_in_strings() -> None:
    data = {"providers": {"websocket": {"url": "wss://${HOST}:${PORT:-443}/v", "headers": {}}}}
    config = parse_config(data, environ={"HOST": "voice.example.com"})
    assert ws_provider(config, "websocket").url == "wss://voice.example.com:443/v"
    config = parse_config(data, environ={"HOST": "h", "PORT": "8443"})
    assert ws_provider(config, "websocket").url == "wss://h:8443/v"


def test_env_default_applies_when_unset_or_empty() -> None:
    data = {"runtime": {"ask_timeout_s": "${X:-3}", "inbox_max": "${N:-7}"}}
    for environ in ({}, {"X": "", "N": ""}):
        config = parse_config(data, environ=environ)
        assert config.runtime.ask_timeout_s == 3.0
        assert isinstance(config.runtime.ask_timeout_s, float)
        assert config.runtime.inbox_max == 7
        assert isinstance(config.runtime.inbox_max, int)
    config = parse_config(data, environ={"X": "0.25", "N": "12"})
    assert (config.runtime.ask_timeout_s, config.runtime.inbox_max) == (0.25, 12)


def test_bad_number_from_env_names_variable_not_value() -> None:
    error = config_error({"runtime": {"ask_timeout_s": "${TIMEOUT}"}}, {"TIMEOUT": SECRET})
    assert error.key_path == "runtime.ask_timeout_s"
    assert error.why == ("environment variable 'TIMEOUT' does not hold a number of seconds (float)")
    assert SECRET not in str(error)
    error = config_error({"runtime": {"inbox_max": "${N}"}}, {"N": "1.5"})
    assert error.why == "environment variable 'N' does not hold a whole number (int)"


def test_constraint_on_env_number_does_not_print_the_value() -> None:
    error = config_error({"runtime": {"inbox_max": "${N}"}}, {"N": "-987654"})
    assert error.key_path == "runtime.inbox_max"
    assert error.why.startswith("must be > 0, got '${N}'")
    assert "987654" not in str(error)


def test_partial_reference_in_a_number_is_a_type_error() -> None:
    error = config_error({"runtime": {"ask_timeout_s": "${X}s"}}, {"X": "4"})
    assert error.key_path == "runtime.ask_timeout_s"
    assert error.why.startswith("expected a number of seconds (float), got '${X}s'")


def test_dollar_dollar_escapes_a_literal_reference() -> None:
    # Any string list will do (subprotocols are HTTP tokens: no braces).
    events = ["$${HOME}", "a$${B}c", "$$x"]
    data = {"providers": {"twilio": {"status_callback_events": events}}}
    config = parse_config(data, environ={"HOME": "/root", "B": "b"})
    twilio = config.provider("twilio")
    assert isinstance(twilio, TwilioProviderConfig)
    assert twilio.status_callback_events == ("${HOME}", "a${B}c", "$$x")


def test_env_values_cannot_inject_yaml_structure() -> None:
    # Any string will do (a header value may not hold the newline: test_config_hardening).
    data = {"emulator": {"wav": "${V}"}}
    config = parse_config(data, environ={"V": "{b: c}\nruntime: [1]"})
    assert config.emulator.wav == "{b: c}\nruntime: [1]"
    assert config.runtime == RuntimeConfig()


def test_malformed_reference() -> None:
    error = config_error({"providers": {"websocket": {"subprotocols": ["${1}"]}}})
    assert error.key_path == "providers.websocket.subprotocols[0]"
    assert error.why.startswith("malformed reference")


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSPORT_TEST_TIMEOUT", "1.5")
    config = parse_config({"runtime": {"ask_timeout_s": "${TRANSPORT_TEST_TIMEOUT}"}})
    assert config.runtime.ask_timeout_s == 1.5


# ---- secrets ----


def secret_config() -> TransportConfig:
    data = {
        "providers": {
            "echo": {
                "type": "websocket",
                "url": f"wss://user:{SECRET}@h.example.com/v?api_key={SECRET}&lang=en",
                "headers": {"Authorization": "Bearer ${TOKEN}", "X-Plain": "visible?"},
            }
        }
    }
    return parse_config(data, environ={"TOKEN": SECRET})


def test_redacted_masks_every_secret() -> None:
    config = secret_config()
    assert ws_provider(config, "echo").headers["Authorization"] == f"Bearer {SECRET}"
    redacted = config.redacted()
    echo = redacted["providers"]["echo"]
    assert echo["headers"] == {"Authorization": "***", "X-Plain": "***"}
    assert echo["url"] == "wss://user:***@h.example.com/v?api_key=***&lang=en"
    assert SECRET not in str(redacted)
    assert yaml.safe_load(yaml.safe_dump(redacted)) == redacted  # plain data only


def test_repr_has_no_secret() -> None:
    config = secret_config()
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.provider("echo"))
    assert "wss://user:***@h.example.com" in repr(config.provider("echo"))


def test_errors_never_echo_secret_values() -> None:
    bad_header = {"providers": {"websocket": {"headers": {"X-Token": 12345678}}}}
    error = config_error(bad_header)
    assert error.key_path == "providers.websocket.headers.X-Token"
    assert error.why == "expected a string (str), got int (value hidden); quote it"
    assert "12345678" not in str(error)
    bad_url = {"providers": {"websocket": {"url": f"http://u:{SECRET}@h/?token={SECRET}"}}}
    error = config_error(bad_url)
    assert error.key_path == "providers.websocket.url"
    assert SECRET not in str(error)
    bad_env_url = {"providers": {"websocket": {"url": "${URL}"}}}
    error = config_error(bad_env_url, {"URL": f"http://{SECRET}"})
    assert error.key_path == "providers.websocket.url"
    assert SECRET not in str(error)


# ---- immutability ----


def test_configs_are_frozen() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.runtime = RuntimeConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.runtime.ask_timeout_s = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ws_provider(config, "websocket").url = "ws://h"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.providers["x"] = WebSocketProviderConfig(name="x")  # type: ignore[index]


def test_mappings_are_read_only_even_when_built_in_code() -> None:
    headers = {"X-A": "1"}
    provider = WebSocketProviderConfig(name="p", headers=headers)
    headers["X-A"] = "2"
    assert isinstance(provider.headers, MappingProxyType)
    assert provider.headers["X-A"] == "1"
    with pytest.raises(TypeError):
        provider.headers["X-B"] = "3"  # type: ignore[index]
    config = TransportConfig(providers={"p": provider})
    assert isinstance(config.providers, MappingProxyType)
    assert config.provider("p") is provider


def test_redacted_shows_environment_values_as_their_template() -> None:
    data = {
        "runtime": {"ask_timeout_s": "${ASK_S:-3}"},
        "providers": {
            "voice": {
                "type": "websocket",
                "url": "wss://voice.example.com/${VOICE_PATH}",
                "subprotocols": ["${PROTO}", "plain"],
            }
        },
    }
    env = {"VOICE_PATH": "sk-LEAKED-123", "PROTO": "tok-PROTO-456"}
    config = parse_config(data, environ=env)
    assert ws_provider(config, "voice").url == "wss://voice.example.com/sk-LEAKED-123"
    shown = config.redacted()
    text = repr(shown)
    assert "sk-LEAKED-123" not in text and "tok-PROTO-456" not in text
    assert shown["providers"]["voice"]["url"] == "wss://voice.example.com/${VOICE_PATH}"
    assert shown["providers"]["voice"]["subprotocols"] == ["${PROTO}", "plain"]
    assert shown["runtime"]["ask_timeout_s"] == "${ASK_S:-3}"
    assert config == parse_config(data, environ=env)  # templates do not affect equality
