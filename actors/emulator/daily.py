"""A local Daily-compatible REST API: rooms, meeting tokens and dial-out.

:class:`DailyApiServer` answers the requests a Daily session makes of Daily's REST API (v1) the
way Daily does: ``Authorization: Bearer <key>`` (missing or malformed: 400
``authorization-header-error``; wrong: 401 ``authentication-error``), bodies in JSON (not JSON:
400 ``json-parsing-error``), errors as ``{"error": <type>, "info": <words>}``, room names of
ASCII letters, digits, ``-`` and ``_``, a 404 ``not-found`` for rooms that do not exist (or
have expired), and ``{"deleted": true, "name": ...}`` for a deleted room.

It keeps the rooms, tokens and dial-outs it was asked for (:attr:`DailyApiServer.rooms`,
:meth:`DailyApiServer.check_token`), tells its owner about dial-outs and deleted rooms through
``on_dial_out`` / ``on_dial_out_stop`` / ``on_room_deleted`` (so that the emulated SDK can put a
phone in the room), and fails on purpose with :meth:`DailyApiServer.inject`, before or after
doing the work (a lost answer). Plain HTTP on loopback, one thread per connection; keys and
tokens are never logged.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from ._http import (
    ApiRequestHandler,
    Fault,
    HTTPApiServer,
    RecordedRequest,
    Reply,
    status_phrase,
)

__all__ = [
    "DailyApiServer",
    "DailyOperation",
    "DialOutSession",
    "EmulatedRoom",
    "RecordedRequest",
]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024

DailyOperation = Literal[
    "create_room", "get_room", "delete_room", "create_token", "dial_out_start", "dial_out_stop"
]
_OPERATIONS = frozenset(DailyOperation.__args__)  # type: ignore[attr-defined]

_ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_ROOM = re.compile(r"/v1/rooms/(?P<name>[^/]+)")
_DIAL_OUT = re.compile(r"/v1/rooms/(?P<name>[^/]+)/dialOut/(?P<action>start|stop)")
# Room properties the emulator understands, with the JSON type each must have.
_ROOM_PROPERTIES: dict[str, type | tuple[type, ...]] = {
    "exp": int,
    "nbf": int,
    "max_participants": int,
    "enable_dialout": bool,
    "eject_at_room_exp": bool,
    "enable_chat": bool,
    "enable_prejoin_ui": bool,
    "start_video_off": bool,
    "start_audio_off": bool,
}
_TOKEN_PROPERTIES: dict[str, type | tuple[type, ...]] = {
    "room_name": str,
    "is_owner": bool,
    "exp": int,
    "nbf": int,
    "user_name": str,
    "user_id": str,
    "eject_at_token_exp": bool,
    "eject_after_elapsed": int,
    "start_video_off": bool,
    "start_audio_off": bool,
}
_DEFAULT_FAULTS = {
    400: "invalid-request-error",
    401: "authentication-error",
    403: "forbidden-error",
    404: "not-found",
    429: "rate-limit-error",
}


@dataclass
class DialOutSession:
    """One dial-out the emulator was asked to start. Mutated only under the server's lock."""

    session_id: str
    room: str
    to: str
    caller_id: str | None
    started_at: float
    stopped_at: float | None = None

    @property
    def active(self) -> bool:
        return self.stopped_at is None


@dataclass
class EmulatedRoom:
    """One room. Mutated only under the server's lock."""

    name: str
    id: str
    privacy: str
    url: str
    properties: dict[str, Any]
    created_at: datetime
    deleted: bool = False
    dial_outs: list[DialOutSession] = field(default_factory=list)

    @property
    def expired(self) -> bool:
        exp = self.properties.get("exp")
        return isinstance(exp, int) and exp <= time.time()

    def resource(self) -> dict[str, Any]:
        """The room as Daily's room object."""
        return {
            "id": self.id,
            "name": self.name,
            "api_created": True,
            "privacy": self.privacy,
            "url": self.url,
            "created_at": self.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "config": dict(self.properties),
        }


def _error(status: int, error: str, info: str) -> Reply:
    return Reply(status, {"error": error, "info": info})


def _not_found(what: str) -> Reply:
    return _error(404, "not-found", f"{what} not found")


def _invalid(info: str) -> Reply:
    return _error(400, "invalid-request-error", info)


def _check_properties(
    properties: object, known: dict[str, type | tuple[type, ...]]
) -> Reply | None:
    if not isinstance(properties, dict):
        return _invalid("properties must be an object")
    for key, value in properties.items():
        kind = known.get(key)
        if kind is None:
            return _invalid(f"unknown property '{key}'")
        # JSON true is no number, and a number no flag.
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            return _invalid(f"property '{key}' has the wrong type")
    return None


class DailyApiServer(HTTPApiServer):
    """A Daily-compatible REST API on ``host:port`` (port 0: any free port); its base URL
    (the client's ``api_base_url``) is :attr:`api_url`.

    ``api_keys`` are the keys it accepts. Rooms get URLs under :attr:`url` (where the server
    is, e.g. ``http://127.0.0.1:PORT``; a room is ``{url}/{name}``), which the emulated SDK
    (:mod:`actors.emulator.daily_sdk`) knows how to join. ``on_dial_out(session)``,
    ``on_dial_out_stop(session)`` and ``on_room_deleted(room)`` run once the answer is on the
    wire, on the connection's thread; an exception in one is logged and the server goes on.
    """

    _label = "daily emulator"
    _logger = logger

    def __init__(
        self,
        api_keys: Iterable[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = MAX_BODY,
        name: str = "daily-api",
    ) -> None:
        self._api_keys = [key for key in api_keys if key]
        if not self._api_keys:
            raise ValueError("at least one API key is needed")
        super().__init__(
            host=host,
            port=port,
            name=name,
            handler=_Handler,
            max_body=max_body,
            fault_operations=_OPERATIONS,
            requests_kept=None,
        )
        self.on_dial_out: Callable[[DialOutSession], None] | None = None
        self.on_dial_out_stop: Callable[[DialOutSession], None] | None = None
        self.on_room_deleted: Callable[[EmulatedRoom], None] | None = None
        self._rooms: dict[str, EmulatedRoom] = {}
        self._tokens: dict[str, dict[str, Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The REST API's base URL (``{url}/v1``), as ``https://api.daily.co/v1`` is Daily's."""
        return f"{self.url}/v1"

    def _still_running(self, timeout: float, threads: list[threading.Thread]) -> None:
        # The Daily emulator's own wording (no thread names), as it has always logged it.
        logger.warning("daily emulator threads still running after %.1f s", timeout)

    # -- what tests and the emulated SDK see -------------------------------------------------

    @property
    def rooms(self) -> dict[str, EmulatedRoom]:
        """The rooms that exist (not deleted, not expired), by name."""
        with self._lock:
            return {n: r for n, r in self._rooms.items() if not r.deleted and not r.expired}

    def room(self, name: str) -> EmulatedRoom | None:
        """The room ``name`` if it exists (not deleted, not expired)."""
        with self._lock:
            room = self._rooms.get(name)
            return room if room is not None and not room.deleted and not room.expired else None

    def room_of_url(self, url: str) -> EmulatedRoom | None:
        """The room whose URL is ``url`` (as the emulated SDK's ``join`` is given it)."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.url:
            return None
        return self.room(unquote(parts.path.strip("/")))

    def check_token(self, token: str | None, room: EmulatedRoom) -> str | None:
        """Why ``token`` may not join ``room`` (``None``: it may). A private room needs a
        token for it; a public one takes any valid token, or none."""
        if not token:
            return None if room.privacy == "public" else "a private room needs a meeting token"
        with self._lock:
            properties = self._tokens.get(token)
        if properties is None:
            return "unknown meeting token"
        name = properties.get("room_name")
        if name is not None and name != room.name:
            return "the meeting token is for another room"
        exp = properties.get("exp")
        if isinstance(exp, int) and exp <= time.time():
            return "the meeting token has expired"
        return None

    def token_properties(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._tokens.get(token)
            return dict(found) if found is not None else None

    def inject(
        self,
        operation: DailyOperation,
        status: int,
        *,
        times: int = 1,
        error: str | None = None,
        info: str | None = None,
        retry_after: float | None = None,
        performed: bool = False,
    ) -> None:
        """Answer the next ``times`` authenticated ``operation`` requests with ``status``.

        The body is Daily-shaped: ``error`` defaults to the type Daily uses for the status
        (429 ``rate-limit-error``, 5xx ``server-error``...). ``performed=True`` carries the
        operation out before answering with the fault, as when Daily acted but its answer was
        lost. ``retry_after`` adds that header. Faults queue up in the order given.
        """
        if operation not in self._faults:
            raise ValueError(f"unknown operation {operation!r}")
        kind = error or _DEFAULT_FAULTS.get(status, "server-error")
        body = _error(status, kind, info or status_phrase(status)).payload
        fault = Fault(status, body, retry_after, remaining=times, performed=performed)
        self._queue_fault(operation, fault)

    # -- request handling (connection threads) ------------------------------------------------

    def _authenticate(self, header: str) -> Reply | None:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return _error(400, "authorization-header-error", "bad Authorization header format")
        # Compare with every key, so that timing does not tell how close a guess was.
        matched = False
        for known in self._api_keys:
            matched |= hmac.compare_digest(key.strip().encode(), known.encode())
        if not matched:
            return _error(401, "authentication-error", "the API key is not valid")
        return None

    def _route(self, method: str, path: str) -> tuple[str | None, str | None, str | None]:
        """(operation, room name, why not) for one request line."""
        if path == "/v1/rooms":
            return ("create_room", None, None) if method == "POST" else (None, None, "method")
        if path == "/v1/meeting-tokens":
            return ("create_token", None, None) if method == "POST" else (None, None, "method")
        match = _DIAL_OUT.fullmatch(path)
        if match is not None:
            if method != "POST":
                return None, None, "method"
            return f"dial_out_{match['action']}", unquote(match["name"]), None
        match = _ROOM.fullmatch(path)
        if match is not None:
            operation = {"GET": "get_room", "DELETE": "delete_room"}.get(method)
            return operation, unquote(match["name"]), None if operation else "method"
        return None, None, "path"

    def _handle(
        self, method: str, target: str, authorization: str, body: bytes
    ) -> tuple[Reply, str | None]:
        """Route and answer one request; returns the reply and the operation's name."""
        path = urlsplit(target).path
        operation, name, why_not = self._route(method, path)
        if operation is None:
            if why_not == "method":
                return _error(405, "invalid-request-error", "method not allowed"), None
            return _not_found(f"{path}"), None
        denied = self._authenticate(authorization)
        if denied is not None:
            return denied, operation
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                return _error(400, "json-parsing-error", "the body is not JSON"), operation
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return _invalid("the body must be a JSON object"), operation
        fault = self._take_fault(operation)
        if fault is not None and not fault.performed:
            return fault.reply(), operation
        reply = self._perform(operation, name, data)
        if fault is not None:  # done, but the answer is "lost": a fault instead
            lost = fault.reply()
            lost.after = reply.after
            return lost, operation
        return reply, operation

    def _perform(self, operation: str, name: str | None, data: dict[str, Any]) -> Reply:
        if operation == "create_room":
            return self._create_room(data)
        if operation == "create_token":
            return self._create_token(data)
        assert name is not None
        if operation == "get_room":
            return self._get_room(name)
        if operation == "delete_room":
            return self._delete_room(name)
        if operation == "dial_out_start":
            return self._dial_out_start(name, data)
        return self._dial_out_stop(name, data)

    def _create_room(self, data: dict[str, Any]) -> Reply:
        name = data.get("name", "")
        if name == "" or name is None:
            name = secrets.token_hex(10)
        if not isinstance(name, str) or not _ROOM_NAME.fullmatch(name):
            return _invalid("name: only letters, digits, '-' and '_', at most 128 characters")
        privacy = data.get("privacy", "public")
        if privacy not in ("public", "private"):
            return _invalid("privacy must be 'public' or 'private'")
        properties = data.get("properties", {})
        problem = _check_properties(properties, _ROOM_PROPERTIES)
        if problem is not None:
            return problem
        unknown = set(data) - {"name", "privacy", "properties"}
        if unknown:
            return _invalid(f"unknown parameter '{sorted(unknown)[0]}'")
        max_participants = properties.get("max_participants")
        if max_participants is not None and not 1 <= max_participants <= 200:
            return _invalid("max_participants must be between 1 and 200")
        with self._lock:
            existing = self._rooms.get(name)
            if existing is not None and not existing.deleted and not existing.expired:
                return _invalid(f"a room named {name} already exists")
            room = EmulatedRoom(
                name=name,
                id=str(uuid.uuid4()),
                privacy=privacy,
                url=f"{self.url}/{name}",
                properties=dict(properties),
                created_at=datetime.now(UTC),
            )
            self._rooms[name] = room
            payload = room.resource()
        logger.info("emulated daily room %s created", name)
        return Reply(200, payload)

    def _get_room(self, name: str) -> Reply:
        with self._lock:
            room = self._rooms.get(name)
            if room is None or room.deleted or room.expired:
                return _not_found(f"room {name}")
            return Reply(200, room.resource())

    def _delete_room(self, name: str) -> Reply:
        with self._lock:
            room = self._rooms.get(name)
            if room is None or room.deleted:
                return _not_found(f"room {name}")
            expired = room.expired
            room.deleted = True
            now = time.time()
            for dial_out in room.dial_outs:
                if dial_out.stopped_at is None:
                    dial_out.stopped_at = now
        if expired:  # Daily: an expired room was deleted implicitly; say so, with a 404
            reply = _not_found(f"room {name}")
            reply.payload["deleted"] = True
            return reply
        logger.info("emulated daily room %s deleted", name)
        callback = self.on_room_deleted
        after = (lambda: self._callback("on_room_deleted", callback, room)) if callback else None
        return Reply(200, {"deleted": True, "name": name}, after=after)

    def _create_token(self, data: dict[str, Any]) -> Reply:
        properties = data.get("properties")
        if properties is None:
            properties = {}
        problem = _check_properties(properties, _TOKEN_PROPERTIES)
        if problem is not None:
            return problem
        token = "emulated-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = dict(properties)
        return Reply(200, {"token": token})

    def _dial_out_start(self, name: str, data: dict[str, Any]) -> Reply:
        phone, sip = data.get("phoneNumber"), data.get("sipUri")
        if (phone is None) == (sip is None):
            return _invalid("give either phoneNumber or sipUri")
        if phone is not None and (not isinstance(phone, str) or not _E164.fullmatch(phone)):
            return _invalid("phoneNumber must be an E.164 number, e.g. +12125550100")
        if sip is not None and (not isinstance(sip, str) or not sip.startswith("sip:")):
            return _invalid("sipUri must start with sip:")
        caller_id = data.get("callerId")
        if caller_id is not None and not isinstance(caller_id, str):
            return _invalid("callerId must be a string")
        with self._lock:
            room = self._rooms.get(name)
            if room is None or room.deleted or room.expired:
                return _not_found(f"room {name}")
            if room.properties.get("enable_dialout") is not True:
                return _invalid("dial-out is not enabled for this room (enable_dialout)")
            session = DialOutSession(
                session_id=str(uuid.uuid4()),
                room=name,
                to=str(phone or sip),
                caller_id=caller_id,
                started_at=time.time(),
            )
            room.dial_outs.append(session)
        logger.info("emulated daily room %s: dial-out %s started", name, session.session_id)
        callback = self.on_dial_out
        after = (lambda: self._callback("on_dial_out", callback, session)) if callback else None
        return Reply(200, {"ok": True, "sessionId": session.session_id}, after=after)

    def _dial_out_stop(self, name: str, data: dict[str, Any]) -> Reply:
        wanted = data.get("sessionId")
        with self._lock:
            room = self._rooms.get(name)
            if room is None or room.deleted or room.expired:
                return _not_found(f"room {name}")
            active = [d for d in room.dial_outs if d.active]
            if wanted is not None:
                active = [d for d in active if d.session_id == wanted]
            if not active:
                return _not_found("dial-out session")
            session = active[0]
            session.stopped_at = time.time()
        callback = self.on_dial_out_stop
        after = (
            (lambda: self._callback("on_dial_out_stop", callback, session)) if callback else None
        )
        return Reply(200, {"ok": True}, after=after)

    @staticmethod
    def _callback(what: str, callback: Callable[[Any], None], subject: object) -> None:
        try:
            callback(subject)
        except Exception:
            logger.exception("daily emulator: %s callback failed", what)


class _Handler(ApiRequestHandler):
    """Daily's words for refused requests; HEAD and OPTIONS are not answered (501)."""

    server_version = "DailyEmulator/1.0"

    def _length_required(self) -> Reply:
        return _invalid("send a Content-Length")

    def _bad_length(self) -> Reply:
        return _invalid("invalid Content-Length")

    def _too_large(self, length: int, limit: int) -> Reply:
        return _invalid(f"the body exceeds {limit} bytes")

    def _internal_error(self) -> Reply:
        return _error(500, "server-error", "internal server error")
