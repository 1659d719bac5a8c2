"""The exceptions of transport-actors: one root, every failure a user can meet.

The tree::

    TransportError
    ├── ConfigError            a config file (or value) is invalid: file, key path, why
    ├── SessionError           something about one session (carries ``session_id``)
    │   ├── SessionNotFound    no session has that id (never existed, or already forgotten)
    │   ├── SessionClosed      the session exists but has ended: no more writes
    │   ├── QueueFull          the outbound queue is full (with ``outbound_overflow: raise``)
    │   ├── UnsupportedMessage the session's provider cannot carry that message type
    │   └── StateTooLarge      ``save_state`` got more bytes than ``cluster.max_state_bytes``
    ├── ReadTimeout            no inbound message within the timeout (also a ``TimeoutError``)
    ├── AcceptTimeout          no inbound call to accept in the timeout (also a ``TimeoutError``)
    ├── ProviderError          a provider's REST API said no: provider, HTTP status, code, message
    ├── ConnectionFailed       a WebSocket could not be opened (or was lost): URL, reason
    ├── ServiceClosed          a method was called on a closed ``TransportService``
    ├── Draining               ``create_session`` on a service that ``drain()`` stopped taking calls
    ├── ClusterUnavailable     the cluster's Redis cannot be reached (or timed out): what failed
    ├── IllegalTransition      a session lifecycle change that the state table forbids (a bug)
    └── WireError              the WebSocket protocol cannot go on (actors.wire.exceptions): a
                               peer's protocol error (it becomes the session's exit, and is not
                               raised to a caller) or ``InvalidState`` (a bug of ours)

Exceptions raised by our dependencies (websocket-client, requests, PyYAML, pykka) are converted
into these where they enter our code; they never reach the caller. Messages never carry secrets.
"""

from __future__ import annotations

__all__ = [
    "AcceptTimeout",
    "ClusterUnavailable",
    "ConfigError",
    "ConnectionFailed",
    "Draining",
    "IllegalTransition",
    "ProviderError",
    "QueueFull",
    "ReadTimeout",
    "ServiceClosed",
    "SessionClosed",
    "SessionError",
    "SessionNotFound",
    "StateTooLarge",
    "TransportError",
    "UnsupportedMessage",
]


class TransportError(Exception):
    """The root of every exception raised by transport-actors."""


class ConfigError(TransportError):
    """A configuration is invalid.

    ``file`` is the YAML file (or ``None`` for a config built in code), ``key_path`` the dotted
    path of the offending key (``"runtime.read_timeout_s"``, ``"providers.echo.url"``), and
    ``why`` says what was expected.
    """

    def __init__(self, why: str, *, file: str | None = None, key_path: str = "") -> None:
        self.file = file
        self.key_path = key_path
        self.why = why
        where = file or "<config>"
        if key_path:
            where = f"{where}: {key_path}"
        super().__init__(f"{where}: {why}")


class SessionError(TransportError):
    """Something went wrong with one session; ``session_id`` names it."""

    def __init__(self, message: str, *, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(message)


class SessionNotFound(SessionError, KeyError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session with id {session_id!r}", session_id=session_id)

    # KeyError.__str__ would quote the whole message again.
    __str__ = Exception.__str__


class SessionClosed(SessionError):
    """The session has ended; it accepts no more writes."""

    def __init__(self, session_id: str, reason: str = "") -> None:
        self.reason = reason
        text = f"session {session_id!r} is closed"
        if reason:
            text += f": {reason}"
        super().__init__(text, session_id=session_id)


class QueueFull(SessionError):
    """The session's outbound queue is full and its policy is to refuse, not to drop."""

    def __init__(self, session_id: str, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"session {session_id!r}: the outbound queue is full ({limit} frames, "
            "runtime.outbound_overflow: raise); write again once it drains",
            session_id=session_id,
        )


class UnsupportedMessage(SessionError, TypeError):
    """The session's provider cannot carry this message type."""

    def __init__(self, session_id: str, provider: str, message_type: str) -> None:
        self.provider = provider
        self.message_type = message_type
        super().__init__(
            f"provider {provider!r} of session {session_id!r} cannot carry {message_type}",
            session_id=session_id,
        )


class ReadTimeout(TransportError, TimeoutError):
    """No inbound message arrived within the timeout."""

    def __init__(self, session_id: str, timeout: float) -> None:
        self.session_id = session_id
        self.timeout = timeout
        super().__init__(f"no message on session {session_id!r} within {timeout:g} s")


class AcceptTimeout(TransportError, TimeoutError):
    """No inbound call arrived to be accepted within the timeout."""

    def __init__(self, timeout: float, provider: str | None = None) -> None:
        self.timeout = timeout
        self.provider = provider
        which = f"{provider} call" if provider else "call"
        super().__init__(f"no inbound {which} to accept within {timeout:g} s")


class ProviderError(TransportError):
    """A provider's REST API refused or failed a request.

    ``status`` is the HTTP status (``None`` when no response came back), ``code`` the
    provider's own error code where it gives one, ``message`` its text and ``more_info`` a link.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        code: int | str | None = None,
        more_info: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = message
        self.more_info = more_info
        parts = [f"{provider}:"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"(code {code})")
        parts.append(message)
        if more_info:
            parts.append(f"[{more_info}]")
        super().__init__(" ".join(parts))


class ConnectionFailed(TransportError):
    """A WebSocket could not be opened, or was lost and could not be restored.

    ``url`` is the address dialled (without credentials); ``reason`` says why.
    """

    def __init__(self, url: str, reason: str, *, session_id: str | None = None) -> None:
        self.url = url
        self.reason = reason
        self.session_id = session_id
        who = f"session {session_id!r}: " if session_id else ""
        super().__init__(f"{who}cannot connect to {url}: {reason}")


class StateTooLarge(SessionError, ValueError):
    """``save_state`` was given more bytes than the cluster keeps per session."""

    def __init__(self, session_id: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"session {session_id!r}: a state of {size} bytes is over the limit of {limit} "
            "(cluster.max_state_bytes); save less, e.g. a key to the rest",
            session_id=session_id,
        )


class ClusterUnavailable(TransportError):
    """The cluster's Redis could not be reached, or did not answer in time.

    ``operation`` names what was being done (``"claim_inbound"``, ``"heartbeat"``...);
    ``reason`` says what failed. Neither carries the Redis URL's password.
    """

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"cluster unavailable ({operation}): {reason}")


class Draining(TransportError):
    """The service is draining (``TransportService.drain``): it takes no new session."""

    def __init__(self) -> None:
        super().__init__("the transport service is draining: it takes no new session")


class ServiceClosed(TransportError):
    """The ``TransportService`` has been closed."""

    def __init__(self) -> None:
        super().__init__("the transport service is closed")


class IllegalTransition(TransportError, RuntimeError):
    """A session lifecycle change that the state table forbids; always a bug in our code."""

    def __init__(self, session_id: str, current: str, requested: str) -> None:
        self.session_id = session_id
        self.current = current
        self.requested = requested
        super().__init__(f"session {session_id!r}: illegal transition {current} -> {requested}")
