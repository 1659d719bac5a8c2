"""Helpers shared by the provider codecs (Twilio, Telnyx, Plivo, Vonage, Exotel): typed field
access that names the bad field, rate-limited problem logging, base64 both ways, and
:class:`ProviderCodec`, the bookkeeping every one of those codecs does the same way.

Internal: the public surface is each provider's codec and stream classes.
"""

from __future__ import annotations

import binascii
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from ..messages import Binary, Message

#: Log the first few problems of a kind, then every ``LOG_EVERY``-th: a broken peer sending
#: garbage every 20 ms must not flood the log, but must stay visible.
LOG_FIRST: Final = 3
LOG_EVERY: Final = 100

loads = json.loads


class Malformed(Exception):
    """A frame does not have the documented shape; the text names the field."""


def should_log(count: int) -> bool:
    return count <= LOG_FIRST or count % LOG_EVERY == 0


def label(event: object) -> str:
    """A peer-chosen event name, bounded and repr'd so a hostile one cannot mangle the log."""
    if isinstance(event, str):
        return repr(event[:32])
    return f"<{type(event).__name__}>"


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(value: str, path: str) -> bytes:
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, or a non-ASCII str
        raise Malformed(f"{path} is not base64") from None


def parse_object(frame: str | bytes) -> dict[str, Any]:
    """The JSON object one text frame carries; ``Malformed`` for anything else."""
    if not isinstance(frame, str):
        raise Malformed("binary frame (JSON text frames expected)")
    try:
        obj = loads(frame)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise Malformed("not JSON") from None
    if type(obj) is not dict:
        raise Malformed("not a JSON object")
    return obj


def obj_field(container: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = container.get(key)
    if type(value) is not dict:
        raise Malformed(f"{path} is missing or not an object")
    return value


def str_field(container: Mapping[str, Any], key: str, path: str) -> str:
    value = container.get(key)
    if type(value) is not str:
        raise Malformed(f"{path} is missing or not a string")
    return value


def opt_str(container: Mapping[str, Any], key: str, path: str) -> str | None:
    value = container.get(key)
    if value is not None and type(value) is not str:
        raise Malformed(f"{path} is not a string")
    return value


def opt_int(container: Mapping[str, Any], key: str, path: str) -> int | None:
    """An integer sent as a JSON number or a JSON string of digits (both providers do both)."""
    value = container.get(key)
    if value is None:
        return None
    if type(value) is int:  # ``type(...) is``: bool is an int subclass, true/false stay out
        return value
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            pass
    raise Malformed(f"{path} is not an integer")


def int_field(container: Mapping[str, Any], key: str, path: str) -> int:
    value = opt_int(container, key, path)
    if value is None:
        raise Malformed(f"{path} is missing")
    return value


def str_map(value: object, path: str) -> dict[str, str]:
    if type(value) is not dict or not all(type(v) is str for v in value.values()):
        raise Malformed(f"{path} is not an object of strings")
    return value


def dtmf_digit(obj: Mapping[str, Any]) -> str:
    """The key of a ``dtmf`` event that nests it as ``dtmf.digit`` (all but Vonage)."""
    return str_field(obj_field(obj, "dtmf", "dtmf"), "digit", "dtmf.digit")


def mark_name(obj: Mapping[str, Any]) -> str:
    """The name of a ``mark`` event that nests it as ``mark.name`` (Twilio, Telnyx, Exotel)."""
    return str_field(obj_field(obj, "mark", "mark"), "name", "mark.name")


def param_text(value: object) -> str:
    """A parameter as ``Started.parameters`` carries it: a string as it is, a number or an
    object as its JSON."""
    return value if isinstance(value, str) else dumps(value)


def str_list(container: Mapping[str, Any], key: str, path: str) -> list[str]:
    """A list of strings; a missing one reads as empty."""
    value = container.get(key, [])
    if type(value) is not list or not all(type(v) is str for v in value):
        raise Malformed(f"{path} is not a list of strings")
    return value


def nonempty_str(value: object, path: str) -> str:
    """A string that must not be empty: the id a ``start`` names its stream by, which outbound
    frames are addressed with."""
    if type(value) is not str or not value:
        raise Malformed(f"{path} is missing or not a string")
    return value


class ProviderCodec:
    """What every provider codec here does the same way: the frames it drops counted in
    ``malformed`` and ``unknown`` and logged, rate-limited; and the messages written before its
    stream starts held, at most ``max_held``: past that the oldest held audio is dropped
    (counted in ``dropped_held``); marks and clears are never dropped, since the application
    waits for its marks to come back.

    A subclass names its provider in log lines with ``_name`` (``"Twilio"``) and logs to its
    own module's ``_logger``, so that a provider's lines can be told (and filtered) apart.
    """

    _name: ClassVar[str]
    _logger: ClassVar[logging.Logger]

    def __init__(
        self, *, max_held: int, session_id: str, hidden_parameters: frozenset[str]
    ) -> None:
        if max_held < 0:
            raise ValueError(f"max_held must be >= 0, not {max_held}")
        self.max_held = max_held
        self.session_id = session_id  # only labels log lines
        # Custom parameters kept out of ``Started`` (the gateway's token: an application has no
        # use for it, and might log it).
        self.hidden_parameters = hidden_parameters
        self.malformed = 0
        self.unknown = 0
        self.dropped_held = 0
        self._held: deque[Message] = deque()

    @property
    def held(self) -> int:
        """How many messages wait for the stream to start."""
        return len(self._held)

    def _reject(self, event: object, why: str) -> Sequence[Message]:
        """A frame without the documented shape (``event`` is ``None`` before one is read):
        counted, logged without its content, and it yields nothing."""
        self.malformed += 1
        if should_log(self.malformed):
            what = "frame" if event is None else f"{label(event)} frame"
            self._logger.warning(
                "session %s: dropped malformed %s %s: %s (%d so far)",
                self.session_id,
                self._name,
                what,
                why,
                self.malformed,
            )
        return ()

    def _ignore(self, event: object) -> Sequence[Message]:
        """A frame whose event this codec does not read: counted in ``unknown`` and it yields
        nothing; one that names no event at all is malformed."""
        if type(event) is not str:
            return self._reject(event, "event is missing or not a string")
        self.unknown += 1
        if should_log(self.unknown):
            self._logger.warning(
                "session %s: ignored %s frame with unknown event %s (%d so far)",
                self.session_id,
                self._name,
                label(event),
                self.unknown,
            )
        return ()

    def _hold(self, message: Message) -> None:
        held = self._held
        held.append(message)
        if len(held) <= self.max_held:
            return
        for index, waiting in enumerate(held):
            if isinstance(waiting, Binary):
                del held[index]
                self.dropped_held += 1
                if should_log(self.dropped_held):
                    self._logger.warning(
                        "session %s: %s stream not started, dropped the oldest held audio "
                        "(%d held, %d dropped so far)",
                        self.session_id,
                        self._name,
                        len(held),
                        self.dropped_held,
                    )
                return

    def _take_held(self) -> list[Message]:
        """The held messages, in order, forgotten here."""
        messages = list(self._held)
        self._held.clear()
        return messages


# -- the provider's side (emulators and benchmarks) --------------------------------------------


def app_object(text: str) -> dict[str, Any]:
    """The JSON object a text frame from the application carries; ``ValueError`` naming what
    the frame is instead."""
    try:
        obj = loads(text)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"frame is not JSON: {error}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"frame is a JSON {type(obj).__name__}, not an object")
    return obj


def app_event(frame: str | bytes, streams: str) -> tuple[dict[str, Any], str]:
    """A frame from the application to a stream that takes Twilio's ``media``, ``mark`` and
    ``clear`` events (Twilio's, Exotel's), and its event; ``ValueError`` naming the problem.
    ``streams`` names them in the error for a binary frame."""
    if not isinstance(frame, str):
        raise ValueError(f"binary frame: {streams} take JSON text frames only")
    obj = app_object(frame)
    event = obj.get("event")
    if event not in ("media", "mark", "clear"):
        raise ValueError(f"unknown event {label(event)} (expected media, mark or clear)")
    return obj, event


def media_payload(obj: Mapping[str, Any]) -> bytes:
    """The audio of a ``media`` event: ``media.payload``, base64-decoded."""
    return unb64(
        str_field(obj_field(obj, "media", "media"), "payload", "media.payload"), "media.payload"
    )
