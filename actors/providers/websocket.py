"""The ``websocket`` provider: any plain WebSocket endpoint, no REST, no codec."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit

from ..codecs.websocket import PassthroughCodec
from ..config import RuntimeConfig, WebSocketProviderConfig
from ..connection import DialOptions
from ..errors import ConfigError
from ..messages import SessionRequest
from ..redaction import redact_url
from ..transport import websocket_connection
from . import SessionPlan

__all__ = ["WebSocketProvider"]


class WebSocketProvider:
    """Dials ``url`` (from the request, else from the config) with optional headers and
    subprotocols, and passes ``Text``, ``Binary`` and ``Close`` through. A ``user:password@``
    in the URL is sent as ``Authorization: Basic``, never in the URL."""

    def __init__(self, config: WebSocketProviderConfig, runtime: RuntimeConfig) -> None:
        self.name = config.name
        self.config = config
        self.runtime = runtime

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        for field_name in ("to", "from_"):
            if getattr(request, field_name) is not None:
                raise TypeError(f"the websocket provider takes no {field_name!r}")
        url = request.url or self.config.url
        if not url:
            raise ConfigError(
                "no url configured, and none given to create_session(url=...)",
                file=None,
                key_path=f"providers.{self.name}.url",
            )
        scheme = urlsplit(url).scheme
        if scheme not in ("ws", "wss"):
            raise ValueError(f"url must be ws:// or wss://, got {redact_url(url)!r}")
        headers = dict(self.config.headers)
        headers.update(request.headers or {})
        url, headers = _userinfo_as_basic_auth(url, headers)
        subprotocols = request.subprotocols
        if subprotocols is None:
            subprotocols = self.config.subprotocols
        runtime = self.runtime
        dial = DialOptions(
            url=url,
            headers=headers,
            subprotocols=tuple(subprotocols),
            connect_timeout_s=runtime.connect_timeout_s,
            max_message_bytes=runtime.max_message_bytes,
            ping_interval_s=runtime.ping_interval_s,
            ping_timeout_s=runtime.ping_timeout_s,
            close_timeout_s=runtime.shutdown_timeout_s,
        )
        return SessionPlan(codec=PassthroughCodec(), dial=dial, connect=websocket_connection)

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        """Nothing to hang up: closing the WebSocket is the whole session."""

    def close(self) -> None:
        """Nothing held."""


def _userinfo_as_basic_auth(url: str, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``ws(s)://user:password@host/...`` -> the URL without its userinfo, and the headers with
    ``Authorization: Basic`` (RFC 7617) made of it. websocket-client would drop the userinfo
    without a word; and a URL without it is safe to log and to return in ``SessionInfo``."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, headers
    bare = urlunsplit(parts._replace(netloc=host))
    if not userinfo:  # `ws://@host`: nothing to send
        return bare, headers
    if any(name.lower() == "authorization" for name in headers):
        raise ValueError(
            "the url carries credentials (user:password@) and the headers an Authorization "
            "header: give one of them"
        )
    user, _, password = userinfo.partition(":")
    user, password = unquote(user), unquote(password)
    if ":" in user:
        raise ValueError("the user name in the url may not contain ':' (RFC 7617)")
    credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return bare, {**headers, "Authorization": f"Basic {credentials}"}
