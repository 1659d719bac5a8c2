"""Unit tests for the pure data modules: messages, errors, exits, redaction, the websocket codec."""

from __future__ import annotations

import dataclasses
import importlib
from urllib.parse import parse_qsl, urlsplit

import pytest

import actors
from actors import errors
from actors.codecs.websocket import PassthroughCodec
from actors.errors import (
    AcceptTimeout,
    ClusterUnavailable,
    ConfigError,
    ConnectionFailed,
    Draining,
    IllegalTransition,
    ProviderError,
    QueueFull,
    ReadTimeout,
    ServiceClosed,
    SessionClosed,
    SessionError,
    SessionNotFound,
    StateTooLarge,
    TransportError,
    UnsupportedMessage,
)
from actors.exits import Exit, ExitKind
from actors.lifecycle import SessionState
from actors.messages import (
    Audio,
    Binary,
    Clear,
    Close,
    Dtmf,
    Mark,
    MediaFormat,
    Message,
    SessionInfo,
    SessionRequest,
    SessionStatus,
    Started,
    Stopped,
    Text,
)
from actors.redaction import MASK, is_secret_key, redact_url

# --------------------------------------------------------------------------- messages

SAMPLES = [
    Text("hi"),
    Binary(b"\x00\x01"),
    Audio(b"\xff", timestamp=20, sequence=3),
    Close(1011, "oops"),
    Started("MZ1", "CA1", parameters={"k": "v"}),
    Dtmf("5"),
    Mark("m1"),
    Clear(),
    Stopped(),
    MediaFormat(),
    SessionInfo("s1", "websocket", "ws://x/"),
    SessionRequest(provider="websocket"),
]


def _status(**over: object) -> SessionStatus:
    fields = dict(
        session_id="s1",
        provider="websocket",
        state=SessionState.OPEN,
        connected=True,
        restarts=0,
        frames_in=1,
        frames_out=2,
        bytes_in=3,
        bytes_out=4,
        dropped_in=5,
        dropped_out=7,
        queued_out=0,
        last_error=None,
    )
    fields.update(over)
    return SessionStatus(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("obj", [*SAMPLES, _status()], ids=lambda o: type(o).__name__)
def test_messages_are_frozen_and_slotted(obj: object) -> None:
    assert dataclasses.is_dataclass(obj)
    assert not hasattr(obj, "__dict__")
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, f.name, getattr(obj, f.name))
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        obj.not_a_field = 1  # type: ignore[attr-defined]
    assert not hasattr(obj, "not_a_field")


@pytest.mark.parametrize(
    "cls",
    [Text, Binary, Audio, Close, Started, Dtmf, Mark, Clear, Stopped],
    ids=lambda c: c.__name__,
)
def test_message_types_derive_from_message(cls: type) -> None:
    assert issubclass(cls, Message)
    assert "__slots__" in cls.__dict__


def test_audio_is_a_binary() -> None:
    audio = Audio(b"abc", timestamp=40, sequence=2)
    assert isinstance(audio, Binary)
    assert audio.data == b"abc"
    assert (audio.timestamp, audio.sequence) == (40, 2)
    plain = Audio(b"x")
    assert plain.timestamp is None
    assert plain.sequence is None
    assert audio != Binary(b"abc")


def test_close_defaults_to_normal_closure() -> None:
    assert Close() == Close(1000, "")


def test_equal_messages_compare_equal() -> None:
    assert Text("a") == Text("a")
    assert Text("a") != Text("b")
    assert Binary(b"a") != Text("a")
    assert Clear() == Clear()
    assert hash(Text("a")) == hash(Text("a"))


def test_started_parameters_are_read_only_and_not_aliased() -> None:
    source = {"from": "+100", "to": "+200"}
    started = Started("MZ1", "CA1", parameters=source)
    with pytest.raises(TypeError):
        started.parameters["from"] = "+999"  # type: ignore[index]
    with pytest.raises(TypeError):
        del started.parameters["to"]  # type: ignore[attr-defined]
    source["from"] = "+999"
    source["extra"] = "x"
    assert dict(started.parameters) == {"from": "+100", "to": "+200"}
    assert started.media_format == MediaFormat("audio/x-mulaw", 8000, 1)


def test_started_default_parameters_are_read_only_and_distinct() -> None:
    a = Started("s", "c")
    b = Started("s2", "c2")
    assert dict(a.parameters) == {}
    with pytest.raises(TypeError):
        a.parameters["x"] = "y"  # type: ignore[index]
    assert a.parameters is not b.parameters


def test_session_status_dropped_sums_both_directions() -> None:
    assert _status().dropped == 12
    assert _status(dropped_in=0, dropped_out=0).dropped == 0
    assert _status(dropped_in=3, dropped_out=0).dropped == 3
    assert _status().exit_reasons == ()


def test_session_request_hides_headers_in_repr() -> None:
    request = SessionRequest(headers={"Authorization": "Bearer s3cr3t"})
    assert "s3cr3t" not in repr(request)


# --------------------------------------------------------------------------- errors

ALL_ERRORS = [
    ConfigError("bad", file="f.yaml", key_path="a.b"),
    SessionError("m", session_id="s"),
    SessionNotFound("s"),
    SessionClosed("s", "ended"),
    UnsupportedMessage("s", "twilio", "Binary"),
    QueueFull("s", 100),
    ReadTimeout("s", 1.5),
    AcceptTimeout(1.5, "twilio"),
    ProviderError("twilio", "nope", status=400, code=21211),
    ConnectionFailed("ws://h/", "refused", session_id="s"),
    ServiceClosed(),
    IllegalTransition("s", "OPEN", "CONNECTING"),
    ClusterUnavailable("claim_inbound", "connection refused"),
    StateTooLarge("s", 70_000, 65_536),
    Draining(),
]


def test_every_error_class_in_module_is_a_transport_error() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for cls in classes:
        assert issubclass(cls, TransportError), cls
    assert {type(e) for e in ALL_ERRORS} | {TransportError} == set(classes)


@pytest.mark.parametrize("err", ALL_ERRORS, ids=lambda e: type(e).__name__)
def test_error_instances_are_transport_errors_with_text(err: Exception) -> None:
    assert isinstance(err, TransportError)
    assert str(err)


def test_read_timeout_is_a_timeout_error() -> None:
    err = ReadTimeout("sess-1", 2.5)
    assert isinstance(err, TimeoutError)
    assert err.session_id == "sess-1"
    assert err.timeout == 2.5
    assert "sess-1" in str(err)
    assert "2.5 s" in str(err)
    with pytest.raises(TimeoutError):
        raise err


def test_session_not_found_is_a_key_error_not_double_quoted() -> None:
    err = SessionNotFound("abc")
    assert isinstance(err, KeyError)
    assert isinstance(err, SessionError)
    assert err.session_id == "abc"
    assert str(err) == "no session with id 'abc'"
    assert not str(err).startswith(('"', "'"))
    with pytest.raises(KeyError):
        raise err


def test_session_closed_text() -> None:
    assert str(SessionClosed("s1")) == "session 's1' is closed"
    err = SessionClosed("s1", "peer went away")
    assert str(err) == "session 's1' is closed: peer went away"
    assert err.reason == "peer went away"
    assert err.session_id == "s1"


def test_unsupported_message_is_a_type_error() -> None:
    err = UnsupportedMessage("s1", "websocket", "Mark")
    assert isinstance(err, TypeError)
    text = str(err)
    assert "websocket" in text
    assert "s1" in text
    assert "Mark" in text


def test_config_error_text_contains_file_key_path_and_why() -> None:
    err = ConfigError("expected a number > 0", file="conf/t.yaml", key_path="runtime.read_s")
    text = str(err)
    assert "conf/t.yaml" in text
    assert "runtime.read_s" in text
    assert "expected a number > 0" in text
    assert (err.file, err.key_path, err.why) == (
        "conf/t.yaml",
        "runtime.read_s",
        "expected a number > 0",
    )


def test_config_error_without_file_or_key() -> None:
    assert str(ConfigError("broken")) == "<config>: broken"
    assert str(ConfigError("broken", key_path="a.b")) == "<config>: a.b: broken"


def test_provider_error_text_contains_provider_status_code() -> None:
    err = ProviderError(
        "twilio", "Invalid 'To'", status=400, code=21211, more_info="https://e/21211"
    )
    text = str(err)
    for part in ("twilio", "400", "21211", "Invalid 'To'", "https://e/21211"):
        assert part in text
    assert (err.provider, err.status, err.code, err.message) == (
        "twilio",
        400,
        21211,
        "Invalid 'To'",
    )


def test_provider_error_without_status_or_code() -> None:
    assert str(ProviderError("vonage", "timed out")) == "vonage: timed out"


def test_connection_failed_text() -> None:
    err = ConnectionFailed("wss://h/p", "refused", session_id="s9")
    assert str(err) == "session 's9': cannot connect to wss://h/p: refused"
    assert str(ConnectionFailed("wss://h/p", "refused")) == "cannot connect to wss://h/p: refused"


def test_illegal_transition_names_both_states() -> None:
    err = IllegalTransition("s1", "CLOSED", "OPEN")
    assert isinstance(err, RuntimeError)
    assert "CLOSED -> OPEN" in str(err)
    assert "s1" in str(err)


# --------------------------------------------------------------------------- public API

CONTRACT = {
    "TransportService",
    "Binary",
    "Text",
    "Close",
    "Mark",
    "Clear",
    "Dtmf",
    "Started",
    "Stopped",
    "TransportError",
    "ConfigError",
    "SessionNotFound",
    "SessionClosed",
    "ReadTimeout",
    "ProviderError",
    "ConnectionFailed",
    "UnsupportedMessage",
    "ServiceClosed",
}


def test_package_all_contains_the_contract() -> None:
    assert set(actors.__all__) >= CONTRACT, CONTRACT - set(actors.__all__)
    assert len(actors.__all__) == len(set(actors.__all__))


@pytest.mark.parametrize("name", sorted(actors.__all__))
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("actors")
    assert getattr(module, name) is not None


def test_public_names_are_the_real_objects() -> None:
    assert actors.Text is Text
    assert actors.SessionNotFound is SessionNotFound
    assert actors.TransportError is TransportError


# --------------------------------------------------------------------------- exits


@pytest.mark.parametrize(
    ("exit", "text"),
    [
        (Exit(ExitKind.NORMAL), "normal"),
        (Exit(ExitKind.PEER_CLOSED, 1000), "closed by peer (1000)"),
        (Exit(ExitKind.PEER_CLOSED, 1000, "bye"), "closed by peer (1000 'bye')"),
        (Exit(ExitKind.CRASH, reason="ValueError: x"), "crash in handler: ValueError: x"),
        (Exit(ExitKind.PING_TIMEOUT), "ping timeout"),
        (Exit(ExitKind.HANDSHAKE_FAILED, reason="HTTP 403"), "handshake failed: HTTP 403"),
    ],
)
def test_exit_str(exit: Exit, text: str) -> None:
    assert str(exit) == text


def test_exit_kind_str_is_its_value() -> None:
    for kind in ExitKind:
        assert str(kind) == kind.value


def test_exit_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Exit(ExitKind.NORMAL).code = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- redaction


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_redact_url_masks_userinfo_password() -> None:
    out = redact_url("wss://alice:hunter2@media.example.com:443/stream")
    assert "hunter2" not in out
    assert out == f"wss://alice:{MASK}@media.example.com:443/stream"


def test_redact_url_password_with_at_sign() -> None:
    out = redact_url("wss://bob:p@ss@h.example/")
    assert "p@ss" not in out
    assert "ss@" not in out
    assert out == f"wss://bob:{MASK}@h.example/"


def test_redact_url_masks_a_lone_user_part() -> None:
    # https://<token>@host is a common way to pass a token: a lone user part is masked too.
    assert redact_url("wss://ghp_T0KEN@h.example/x") == "wss://***@h.example/x"


def test_redact_url_masks_secret_query_params_and_keeps_others() -> None:
    url = "wss://h.example/ws?token=T0K&api_key=K3Y&sig=S1G&call=CA123&format=mulaw#frag"
    out = redact_url(url)
    for secret in ("T0K", "K3Y", "S1G"):
        assert secret not in out
    q = _query(out)
    assert q == {"token": MASK, "api_key": MASK, "sig": MASK, "call": "CA123", "format": "mulaw"}
    assert out.startswith("wss://h.example/ws?")
    assert out.endswith("#frag")


def test_redact_url_keeps_blank_and_plain_urls() -> None:
    assert redact_url("ws://127.0.0.1:8765/") == "ws://127.0.0.1:8765/"
    assert _query(redact_url("ws://h/?secret=&x=")) == {"secret": MASK, "x": ""}


def test_redact_url_unparseable_is_fully_masked() -> None:
    assert redact_url("http://[::1") == MASK


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "api_key",
        "X-Auth-Token",
        "Authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "sig",
        "Signature",
        "credentials",
        "AccessKey",
    ],
)
def test_is_secret_key_true(name: str) -> None:
    assert is_secret_key(name) is True


@pytest.mark.parametrize("name", ["url", "call_id", "format", "region", "to", "from", "host"])
def test_is_secret_key_false(name: str) -> None:
    assert is_secret_key(name) is False


# --------------------------------------------------------------------------- codec


@pytest.mark.parametrize("frame", ["", "hello", "ünïcödé", '{"event":"media"}'])
def test_passthrough_text_round_trip(frame: str) -> None:
    codec = PassthroughCodec()
    (message,) = codec.decode(frame)
    assert message == Text(frame)
    assert type(message) is Text
    assert tuple(codec.encode(message)) == (frame,)


@pytest.mark.parametrize("frame", [b"", b"\x00\xff", bytes(range(256))])
def test_passthrough_binary_round_trip(frame: bytes) -> None:
    codec = PassthroughCodec()
    (message,) = codec.decode(frame)
    assert message == Binary(frame)
    assert type(message) is Binary
    assert tuple(codec.encode(message)) == (frame,)


def test_passthrough_encodes_audio_as_its_bytes() -> None:
    assert tuple(PassthroughCodec().encode(Audio(b"pcm", timestamp=1))) == (b"pcm",)


@pytest.mark.parametrize(
    "message",
    [Close(1000, "bye"), Mark("m"), Clear(), Dtmf("1"), Stopped()],
    ids=lambda m: type(m).__name__,
)
def test_passthrough_refuses_non_frames(message: Message) -> None:
    with pytest.raises(TypeError, match=type(message).__name__):
        PassthroughCodec().encode(message)


def test_passthrough_declares_provider_and_outbound_types() -> None:
    codec = PassthroughCodec()
    assert codec.provider == "websocket"
    assert codec.outbound_types == frozenset({Text, Binary, Close})
    assert Mark not in codec.outbound_types
