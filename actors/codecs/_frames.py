"""Helpers shared by the JSON-over-WebSocket codecs (Twilio, Telnyx, Plivo): typed field access that
names the bad field, rate-limited problem logging, and base64 both ways.

Internal: the public surface is each provider's codec and stream classes.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

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
