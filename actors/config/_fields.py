"""What config fields share: the ``check`` functions of their metadata (value -> the problem,
or None), the metadata for a field that is no YAML key, and dotted key paths.

Field metadata: ``{"check": value -> problem | None}`` (the whole value), ``{"check_each":
item -> problem | None}`` (each item of a list or mapping), ``{"yaml": False}`` (set in code,
never read from the file). A problem names what is wrong, never the value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..checks import header_problem, url_text_problem


def _limit(op: str, bound: float, note: str = "") -> dict[str, Any]:
    def check(value: float) -> str | None:
        ok = value > bound if op == ">" else value >= bound
        return None if ok else f"must be {op} {bound:g}{note}"

    return {"check": check}


def _ws_url(value: str | None) -> str | None:
    if value is None:
        return None
    if (problem := url_text_problem(value)) is not None:
        return problem
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
    except ValueError:  # bad IPv6 literal or port
        ok = False
    return None if ok else "expected a ws:// or wss:// URL with a host"


def _host_port(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return "expected host:port (port 0: any free port)"
    return None


def _optional_host_port(value: str | None) -> str | None:
    return None if value is None else _host_port(value)


def _http_url_or(*words: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in words:
            return None
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        extra = "".join(f" or {word!r}" for word in words)
        return None if ok else f"expected an http:// or https:// URL{extra}"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"expected one of: {', '.join(choices)}"

    return check


def _header_item(item: tuple[str, str]) -> str | None:
    return header_problem(*item)


def _fraction(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else "must be between 0 and 1"


_POSITIVE = _limit(">", 0)


def _optional_positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else "must be > 0 (or null: the default)"


_CODE_ONLY = {"yaml": False}


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)
