"""Daily's REST control plane: a room per session, its meeting token, dial-out, and clean-up.

Only what a session needs from Daily's REST API (``https://api.daily.co/v1``) lives here:

- :class:`DailyRestClient` (a :class:`~actors.providers._rest.RestClient`) creates rooms
  (``POST /rooms``), meeting tokens (``POST /meeting-tokens``), starts and stops dial-outs
  (``POST /rooms/{name}/dialOut/start``, ``.../stop``), and deletes rooms
  (``DELETE /rooms/{name}``; a 404 means already gone);
- :func:`parse_error_response` turns Daily's error body ``{"error": ..., "info": ...}`` into a
  :class:`~actors.errors.ProviderError` whose ``code`` is the (stable) ``error`` string;
- :class:`DailyProvider` is the ``daily`` provider: a room named after the session, an owner
  token, a dial-out to ``to`` if given, and a :class:`~actors.dailycall.DailyCall` that joins it.

The API key goes into the ``Authorization`` header and nowhere else: not into log lines,
exception messages or reprs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Unpack

import requests

from ..codecs.daily import DailyCodec
from ..config import DailyProviderConfig
from ..connection import DialOptions
from ..dailycall import DailyCall, SdkMissing, load_sdk
from ..errors import ConfigError, ProviderError
from ..messages import SessionRequest
from . import SessionPlan
from ._http import AT_MOST_ONCE, IDEMPOTENT, clip, json_body, reason_phrase
from ._rest import BearerAuth, RestClient, RestOptions, RestProvider

__all__ = ["DEFAULT_API_BASE_URL", "DailyProvider", "DailyRestClient", "parse_error_response"]

logger = logging.getLogger(__name__)

PROVIDER = "daily"
DEFAULT_API_BASE_URL = "https://api.daily.co/v1"

#: Daily's rule for room names: ASCII letters, digits, '-' and '_'.
ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")


def parse_error_response(status: int, body: bytes | str, *, reason: str = "") -> ProviderError:
    """The :class:`ProviderError` for an error response of HTTP ``status``.

    Daily answers ``{"error": "<type>", "info": "<words>"}``: ``code`` is the type (stable,
    e.g. ``invalid-request-error``, ``authentication-error``, ``rate-limit-error``,
    ``not-found``), ``message`` the words. Any other body gives the HTTP status and reason
    phrase only: an unknown body is not echoed.
    """
    data = json_body(body)
    if not isinstance(data, dict):
        return ProviderError(PROVIDER, reason_phrase(status, reason), status=status)
    error = data.get("error")
    code = clip(error.strip(), 64) if isinstance(error, str) and error.strip() else None
    info = data.get("info")
    message = clip(info.strip()) if isinstance(info, str) and info.strip() else ""
    return ProviderError(
        PROVIDER, message or code or reason_phrase(status, reason), status=status, code=code
    )


def _already_exists(error: ProviderError) -> bool:
    return error.status == 400 and "already exists" in error.message.lower()


class DailyRestClient(RestClient):
    """A small client for Daily's REST API (rooms, meeting tokens, dial-out).

    Authenticates with ``Authorization: Bearer <api_key>``; every request has
    ``timeout=timeout_s``. Retries (``retries`` at most, exponential backoff from ``backoff_s``
    up to ``backoff_max_s``, Retry-After respected but capped there) are split by what is safe:

    - everything but starting a dial-out is retried on 429 and 5xx, and on read errors: those
      requests may be repeated (a room is named by us, so a repeated create that finds it
      "already exists" is a success);
    - starting a dial-out is retried only on 429 and on connection errors where the request
      never left: after a 5xx the phone may be ringing already.

    The session (``http``), the observer (``on_request``) and ``close()`` / ``with`` are
    :class:`~actors.providers._rest.RestClient`'s.
    """

    provider = PROVIDER
    retry_policies = {
        # Safe to repeat after an unknown outcome: reads, deletes, tokens (a second token for
        # the same room is harmless), creating a room we name ourselves (a repeat finds it:
        # "already exists"), stopping a dial-out.
        "create_room": IDEMPOTENT,
        "get_room": IDEMPOTENT,
        "delete_room": IDEMPOTENT,
        "create_meeting_token": IDEMPOTENT,
        "stop_dial_out": IDEMPOTENT,
        # Not safe: a repeat after a 5xx may ring the phone twice.
        "start_dial_out": AT_MOST_ONCE,
    }

    def __init__(
        self,
        *,
        api_key: str,
        api_base_url: str = DEFAULT_API_BASE_URL,
        **options: Unpack[RestOptions],
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required")
        super().__init__(api_base_url=api_base_url, auth=BearerAuth(api_key), **options)

    def __repr__(self) -> str:
        return f"DailyRestClient(api_base_url={self._origin!r}, auth='api_key')"

    # -- rooms ---------------------------------------------------------------------------------

    def create_room(
        self, name: str, *, privacy: str = "private", properties: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create the room ``name``; return Daily's room object (``name``, ``url``, ...).

        A room that "already exists" is fetched and returned instead: we name rooms after
        session ids, which nobody else knows, so it is ours, made by an earlier attempt of
        this same request whose answer was lost (a 5xx, a timeout) before the retry.
        """
        _check_room_name(name)
        body = {"name": name, "privacy": privacy, "properties": dict(properties or {})}
        response = self._request("create_room", "POST", "/rooms", json=body)
        if not response.ok:
            error = self.parse_error(response)
            if _already_exists(error):
                logger.info("daily room %s already existed (a retried create): using it", name)
                return self.get_room(name)
            raise error
        room = self._json_object(response, "POST /rooms")
        if not isinstance(room.get("url"), str) or room.get("name") != name:
            raise ProviderError(
                PROVIDER, "POST /rooms: the answer is not the room asked for", status=200
            )
        logger.info("daily room %s created", name)
        return room

    def get_room(self, name: str) -> dict[str, Any]:
        """Daily's room object of ``name`` (``ProviderError`` with status 404 if none)."""
        _check_room_name(name)
        response = self._request("get_room", "GET", f"/rooms/{name}")
        return self._json_object(response, "GET /rooms/{name}")

    def delete_room(self, name: str) -> bool:
        """Delete the room ``name``: True if this deleted it, False if it was already gone
        (404: deleted, expired, or never made)."""
        _check_room_name(name)
        deleted = self._done(self._request("delete_room", "DELETE", f"/rooms/{name}"))
        logger.info("daily room %s %s", name, "deleted" if deleted else "was already gone")
        return deleted

    # -- meeting tokens ------------------------------------------------------------------------

    def create_meeting_token(
        self, room_name: str, *, exp: int, is_owner: bool = True, user_name: str | None = None
    ) -> str:
        """A meeting token for ``room_name`` valid until ``exp`` (a unix time); an owner's
        token by default (dial-out needs an owner in the room)."""
        _check_room_name(room_name)
        properties: dict[str, Any] = {"room_name": room_name, "is_owner": is_owner, "exp": exp}
        if user_name is not None:
            properties["user_name"] = user_name
        response = self._request(
            "create_meeting_token", "POST", "/meeting-tokens", json={"properties": properties}
        )
        token = self._json_object(response, "POST /meeting-tokens").get("token")
        if not isinstance(token, str) or not token:
            raise ProviderError(
                PROVIDER, "POST /meeting-tokens: the answer has no token", status=200
            )
        return token

    # -- dial-out ------------------------------------------------------------------------------

    def start_dial_out(
        self, room_name: str, to: str, *, caller_id: str | None = None
    ) -> str | None:
        """Dial ``to`` (an E.164 number, or a ``sip:`` URI) into the room; return the dial-out's
        session id (``None`` if Daily gave none). Never repeated after a 5xx or a read error:
        the phone may be ringing already."""
        _check_room_name(room_name)
        body: dict[str, Any] = {"sipUri" if to.startswith("sip:") else "phoneNumber": to}
        if caller_id is not None:
            body["callerId"] = caller_id
        path = f"/rooms/{room_name}/dialOut/start"
        response = self._request("start_dial_out", "POST", path, json=body)
        session_id = self._json_object(response, "POST /rooms/{name}/dialOut/start").get(
            "sessionId"
        )
        logger.info("daily room %s: dial-out started (%s)", room_name, session_id)
        return session_id if isinstance(session_id, str) and session_id else None

    def stop_dial_out(self, room_name: str, session_id: str) -> bool:
        """Stop a dial-out: True if this stopped it, False if it was already over (404)."""
        _check_room_name(room_name)
        path = f"/rooms/{room_name}/dialOut/stop"
        response = self._request("stop_dial_out", "POST", path, json={"sessionId": session_id})
        return self._done(response)

    def parse_error(self, response: requests.Response) -> ProviderError:
        return parse_error_response(
            response.status_code, response.content, reason=response.reason or ""
        )


def _check_room_name(name: str) -> None:
    if not ROOM_NAME.fullmatch(name):
        raise ValueError("a Daily room name is 1 to 128 ASCII letters, digits, '-' or '_'")


class DailyProvider(RestProvider[DailyProviderConfig, DailyRestClient]):
    """The ``daily`` provider: a Daily room per session, joined with Daily's SDK.

    ``open`` creates a private room named after the session (it expires ``room_ttl_s`` later),
    an owner's meeting token, and, given ``to``, a dial-out to it (from ``from_``, else
    ``caller_id``); the plan's connection joins the room with the token. ``hang_up`` stops the
    dial-out and deletes the room (already gone counts as success), which ends the call for
    everyone in it. The REST client is made on first use, so that an embedded emulator starts
    only when a Daily session is created.
    """

    _sdk: Any = None  # what joins the rooms: set with the client (load_sdk, or the emulator's)

    def _make_client(self) -> DailyRestClient:
        c = self.config
        where = f"providers.{self.name}"
        if c.api_base_url == "emulator":
            emulator = self._infrastructure.daily_emulator()
            key, base, sdk = emulator.api_key, emulator.base_url, emulator.sdk
        else:
            if not c.api_key:
                raise ConfigError("required for Daily's API", key_path=f"{where}.api_key")
            try:
                sdk = load_sdk()  # before any room is made that could not be joined
            except SdkMissing as exc:
                raise ConfigError(str(exc), key_path=where) from None
            key, base = c.api_key, c.api_base_url
        self._sdk = sdk
        return DailyRestClient(api_key=key, api_base_url=base, **self._rest_options())

    def open(self, session_id: str, request: SessionRequest) -> SessionPlan:
        for field_name in ("url", "headers", "subprotocols"):
            if getattr(request, field_name) is not None:
                raise TypeError(
                    f"the daily provider takes no {field_name!r}: it makes its own room"
                )
        rest = self._rest()
        sdk = self._sdk
        c = self.config
        room_name = session_id  # unguessable, and Daily's alphabet: the room is surely ours
        exp = int(time.time() + c.room_ttl_s)
        properties: dict[str, Any] = {
            "exp": exp,
            "eject_at_room_exp": True,
            "max_participants": c.max_participants,
        }
        if request.to:
            properties["enable_dialout"] = True
        room = rest.create_room(room_name, privacy=c.room_privacy, properties=properties)
        dial_out: str | None = None
        try:
            token = rest.create_meeting_token(
                room_name, exp=exp, is_owner=True, user_name=c.user_name
            )
            if request.to:
                caller_id = request.from_ or c.caller_id
                dial_out = rest.start_dial_out(room_name, request.to, caller_id=caller_id)
        except BaseException:
            # No session will own this room: do not leave it behind.
            try:
                rest.delete_room(room_name)
            except Exception:
                logger.exception("session %s: deleting room %s failed", session_id, room_name)
            raise
        url = str(room["url"])
        logger.info("session %s: Daily room %s ready (%s)", session_id, room_name, url)
        runtime = self.runtime
        dial = DialOptions(
            url=url,
            connect_timeout_s=runtime.connect_timeout_s,
            close_timeout_s=runtime.shutdown_timeout_s,
        )
        codec = DailyCodec(
            room=room_name,
            call_id=dial_out,
            encoding=c.audio_encoding,
            sample_rate=c.sample_rate,
            parameters=request.parameters,
            session_id=session_id,
        )
        call = DailyCall(sdk=sdk, token=token, user_name=c.user_name, sample_rate=c.sample_rate)
        return SessionPlan(codec=codec, dial=dial, call_id=dial_out, connect=call)

    def hang_up(self, session_id: str, plan: SessionPlan) -> None:
        rest = self._rest()
        room_name = session_id
        if plan.call_id is not None:
            try:
                rest.stop_dial_out(room_name, plan.call_id)
            except ProviderError as exc:
                # Deleting the room below ends the dial-out too; this was a courtesy.
                logger.warning("session %s: stopping the dial-out failed: %s", session_id, exc)
        if rest.delete_room(room_name):
            logger.info("session %s: Daily room deleted", session_id)
        else:
            logger.info("session %s: Daily room was already gone", session_id)
