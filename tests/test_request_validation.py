"""What ``create_session`` accepts (issue 11, item 13's input part, and item 6's handshake part).

Every field of a :class:`SessionRequest` is checked where the request is made, and a wrong one
is named: the wrong type is a ``TypeError`` (as for ``Text(None)`` or a ``timeout="5"``), a value
that cannot go into a handshake is a ``ValueError``. A header value is never quoted.

| input | what it gets |
|---|---|
| ``url=123`` | ``TypeError`` naming ``url`` (was: ``AttributeError``) |
| an int for ``to``, ``from_``, ``provider``, a header, a parameter | ``TypeError`` naming it |
| ``subprotocols="abc"`` | ``TypeError``: a bare str (was: split into ``a``, ``b``, ``c``) |
| CR/LF in a header name or value | ``ValueError`` naming the header; nothing is dialled |
| a space or CR/LF in ``url``, a subprotocol that is no token | ``ValueError`` naming the field |
| ``ws://user:password@host`` | dialled with ``Authorization: Basic``; the URL shown without it |

Everything is real: the service, its actors, a WebSocket server on 127.0.0.1 that records each
handshake (and, for the Basic auth cases, refuses one without the right credentials).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import pytest

from actors import ConnectionFailed, SessionRequest, Text, TransportService
from actors.config import parse_config
from actors.gateway import ServerConnection, ServerThread, echo
from actors.gateway._ws import Request, Response

from .conftest import fast_config

SECRET = "hdr-S3CRET-value-4242"
PASSWORD = "p@ss:w0rd/S3CRET"  # '@', ':' and '/' must reach the server intact


class RecordingServer:
    """An echo server that records every handshake's path and headers, and with
    ``require`` set refuses (401) a handshake whose ``Authorization`` is not exactly that."""

    def __init__(self, require: str | None = None, **options: Any) -> None:
        self.require = require
        self.handshakes: list[tuple[str, list[tuple[str, str]]]] = []
        self._server = ServerThread(
            echo, name="recording-server", process_request=self._check, **options
        )

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append((request.path, list(request.headers.raw_items())))
        if self.require is not None and request.headers.get("Authorization") != self.require:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "who are you?\n")
        return None

    def header(self, name: str) -> list[str]:
        """The values of ``name`` in each handshake so far."""
        return [v for _, items in self.handshakes for k, v in items if k.lower() == name.lower()]

    def __enter__(self) -> RecordingServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as peer:
        yield peer


def round_trip(service: TransportService, url: str, **fields: Any) -> None:
    """A session that works: proof that a refused request disturbed nothing."""
    sid = service.create_session(url=url, **fields).session_id
    service.write_websocket_message(sid, Text("ping"))
    assert service.read_websocket_message(sid, timeout=5) == Text("ping")
    service.end_session(sid)


# ---- wrong types, named ----


@pytest.mark.parametrize("url", [123, b"ws://127.0.0.1:1/", 1.5, ["ws://h/"]])
def test_a_url_that_is_not_a_str_is_named(
    service: TransportService, server: RecordingServer, url: object
) -> None:
    with pytest.raises(TypeError, match=r"SessionRequest\.url must be a str, not "):
        service.create_session(provider="websocket", url=url)
    assert server.handshakes == []
    round_trip(service, server.url)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"provider": "twilio", "to": 15550100, "from_": "+15550199"}, r"SessionRequest\.to "),
        ({"provider": "twilio", "to": "+15550100", "from_": 15550199}, r"SessionRequest\.from_ "),
        ({"provider": 5}, r"SessionRequest\.provider "),
        (
            {"provider": "twilio", "to": "+15550100", "from_": "+1555", "parameters": {"who": 1}},
            r"SessionRequest\.parameters\['who'\] ",
        ),
        ({"provider": "twilio", "parameters": ["who"]}, r"SessionRequest\.parameters must be "),
        ({"headers": {"X-Count": 5}}, r"SessionRequest\.headers\['X-Count'\] "),
        ({"headers": {7: "v"}}, r"SessionRequest\.headers: a key must be a str"),
        ({"headers": [("X-A", "v")]}, r"SessionRequest\.headers must be a mapping"),
        ({"subprotocols": ["audio.v1", 2]}, r"SessionRequest\.subprotocols\[1\] "),
    ],
    ids=[
        "to",
        "from_",
        "provider",
        "parameter",
        "parameters",
        "header-value",
        "header-name",
        "headers",
        "subprotocol",
    ],
)
def test_a_value_of_the_wrong_type_is_a_type_error_naming_the_field(
    service: TransportService, server: RecordingServer, fields: dict[str, Any], named: str
) -> None:
    if fields.get("provider") != "twilio":
        fields = {"url": server.url, **fields}
    with pytest.raises(TypeError, match=named):
        service.create_session(**fields)
    assert server.handshakes == []
    round_trip(service, server.url)


def test_subprotocols_as_a_bare_str_is_refused_not_split(service: TransportService) -> None:
    with RecordingServer(subprotocols=["abc"]) as server:
        for bare in ("abc", b"abc"):
            with pytest.raises(TypeError, match="not a bare"):
                service.create_session(url=server.url, subprotocols=bare)
        assert server.handshakes == []  # no handshake offering 'a', 'b', 'c'
        # As a list it is one subprotocol, offered as such.
        round_trip(service, server.url, subprotocols=["abc"])
        assert server.header("Sec-WebSocket-Protocol") == ["abc"]


def test_a_request_that_is_neither_a_session_request_nor_a_mapping_is_named(
    service: TransportService,
) -> None:
    with pytest.raises(TypeError, match="takes a SessionRequest or a mapping, not str"):
        service.create_session("websocket")  # type: ignore[arg-type]


# ---- what cannot go into a handshake ----

BAD_HEADERS = [
    ("value-crlf", {"X-Token": f"{SECRET}\r\nX-Evil: 1"}, "X-Token"),
    ("value-lf", {"X-Token": f"{SECRET}\nX-Evil: 1"}, "X-Token"),
    ("value-cr", {"X-Token": f"{SECRET}\r"}, "X-Token"),
    ("value-nul", {"X-Token": f"{SECRET}\x00"}, "X-Token"),
    ("name-crlf", {"X-Token\r\nX-Evil": SECRET}, "X-Token"),
    ("name-space", {"X Token": SECRET}, "X Token"),
    ("name-empty", {"": SECRET}, "''"),
]


@pytest.mark.parametrize(
    ("headers", "named"),
    [case[1:] for case in BAD_HEADERS],
    ids=[case[0] for case in BAD_HEADERS],
)
def test_a_header_with_cr_or_lf_is_refused_naming_it_and_nothing_is_sent(
    service: TransportService, server: RecordingServer, headers: dict[str, str], named: str
) -> None:
    with pytest.raises(ValueError, match=r"SessionRequest\.headers: ") as caught:
        service.create_session(url=server.url, headers=headers)
    assert named in str(caught.value)
    assert SECRET not in str(caught.value)
    assert server.handshakes == []
    assert server.header("X-Evil") == []
    round_trip(service, server.url, headers={"X-Token": SECRET, "X-Tab": "a\tb"})
    assert server.header("X-Token") == [SECRET]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"url": "{url}/a b"}, r"SessionRequest\.url: "),
        ({"url": "{url}/a\r\nX-Evil: 1"}, r"SessionRequest\.url: "),
        ({"subprotocols": ["audio v1"]}, r"SessionRequest\.subprotocols\[0\]: "),
        ({"subprotocols": ["ok", "a\r\nX-Evil: 1"]}, r"SessionRequest\.subprotocols\[1\]: "),
    ],
    ids=["url-space", "url-crlf", "subprotocol-space", "subprotocol-crlf"],
)
def test_a_url_or_subprotocol_that_cannot_go_into_a_handshake_is_refused(
    service: TransportService, server: RecordingServer, fields: dict[str, Any], named: str
) -> None:
    fields = {"url": server.url, **fields}
    fields["url"] = fields["url"].replace("{url}", server.url)
    with pytest.raises(ValueError, match=named):
        service.create_session(**fields)
    assert server.handshakes == []
    round_trip(service, server.url)


def test_a_session_request_built_directly_is_checked_too() -> None:
    with pytest.raises(ValueError, match="X-A"):
        SessionRequest(headers={"X-A": "a\r\nb"})
    request = SessionRequest(subprotocols=["a", "b"], headers={"X-A": "1"})
    assert request.subprotocols == ("a", "b")
    with pytest.raises(TypeError):
        request.headers["X-B"] = "2"  # type: ignore[index]


# ---- ws://user:password@host: sent as Basic auth ----


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _with_userinfo(url: str, user: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


def test_url_credentials_are_sent_as_basic_auth_and_never_shown(
    service: TransportService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with RecordingServer(require=_basic("alice", PASSWORD)) as peer:
        url = _with_userinfo(peer.url, "alice", PASSWORD)
        info = service.create_session(url=url)
        service.write_websocket_message(info.session_id, Text("ping"))
        assert service.read_websocket_message(info.session_id, timeout=5) == Text("ping")
        assert info.url == peer.url  # the URL without its userinfo
        status = service.status(info.session_id)
        service.end_session(info.session_id)
        assert peer.header("Authorization") == [_basic("alice", PASSWORD)]
        assert all("alice" not in path for path, _ in peer.handshakes)
    for shown in (caplog.text, repr(info), repr(status)):
        assert PASSWORD not in shown and quote(PASSWORD, safe="") not in shown


def test_wrong_url_credentials_are_refused_by_the_server(service: TransportService) -> None:
    with RecordingServer(require=_basic("alice", PASSWORD)) as peer:
        with pytest.raises(ConnectionFailed) as caught:
            service.create_session(url=_with_userinfo(peer.url, "alice", "wrong-password"))
        assert "401" in str(caught.value)
        assert "wrong-password" not in str(caught.value)
        assert peer.header("Authorization") == [_basic("alice", "wrong-password")]


def test_url_credentials_from_the_config_are_sent_as_basic_auth() -> None:
    with RecordingServer(require=_basic("bot", PASSWORD)) as peer:
        scheme, rest = peer.url.split("://", 1)
        data = {
            "providers": {"voice": {"type": "websocket", "url": f"{scheme}://bot:${{PW}}@{rest}"}}
        }
        loaded = parse_config(data, environ={"PW": quote(PASSWORD, safe="")})
        config = fast_config()
        config = type(config)(
            runtime=config.runtime, supervisor=config.supervisor, providers=loaded.providers
        )
        assert PASSWORD not in str(loaded.redacted())
        with TransportService(config) as service:
            info = service.create_session(provider="voice")
            assert info.url == peer.url
            service.end_session(info.session_id)
        assert peer.header("Authorization") == [_basic("bot", PASSWORD)]


def test_url_credentials_and_an_authorization_header_together_are_refused(
    service: TransportService, server: RecordingServer
) -> None:
    url = _with_userinfo(server.url, "alice", PASSWORD)
    with pytest.raises(ValueError, match="give one of them") as caught:
        service.create_session(url=url, headers={"authorization": f"Bearer {SECRET}"})
    assert PASSWORD not in str(caught.value) and SECRET not in str(caught.value)
    assert server.handshakes == []
