"""Checks shared by the config loader and ``create_session``: what may go into a WebSocket
handshake, and how a bad value is quoted in an error message.

A header name or value, a subprotocol or a URL is written into the HTTP request of the
handshake as it is: a CR or LF in one of them would end a header line early and let the rest
pose as headers (or a whole request) of the writer's choosing. They are refused where they
enter, with a message that names the field and never quotes what may be a secret.

:func:`short_repr` quotes any value in at most :data:`QUOTE_LIMIT` characters, without ever
building the whole ``repr`` first: a value from a YAML file may be an alias bomb (a few hundred
bytes that expand to millions of nodes), and an error message must stay cheap whatever it quotes.
"""

from __future__ import annotations

import re
import reprlib

__all__ = [
    "QUOTE_LIMIT",
    "header_problem",
    "short_repr",
    "subprotocol_problem",
    "url_text_problem",
]

#: The longest quote of a value in an error message, ellipsis included.
QUOTE_LIMIT = 80

# RFC 9110 section 5.6.2: a header name, like a subprotocol (RFC 6455 section 4.1), is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values may hold HTAB, visible characters and obs-text; no other control character.
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


class _ShortRepr(reprlib.Repr):
    """``reprlib``'s bounded repr: a few items per level, a few levels, short strings."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = 6
        self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 6
        self.maxstring = self.maxother = self.maxlong = QUOTE_LIMIT

    def repr_int(self, x: int, level: int) -> str:
        try:
            return super().repr_int(x, level)
        except ValueError:  # more digits than int -> str converts (sys.set_int_max_str_digits)
            return f"<an int of {x.bit_length()} bits>"

    # A read-only mapping (our configs hold them) is shown like the dict it wraps.
    repr_mappingproxy = reprlib.Repr.repr_dict


_REPR = _ShortRepr()


def short_repr(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` in at most ``limit`` characters, ending in ``...`` when cut; its cost
    is bounded whatever the size of ``value``."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def header_problem(name: str, value: str) -> str | None:
    """What is wrong with one handshake header, or ``None``. Names the header, never quotes
    its value (a header may carry a credential)."""
    if not _TOKEN.fullmatch(name):
        return (
            f"the header name {short_repr(name)} is not an HTTP token (letters, digits and "
            "!#$%&'*+-.^_`|~; no CR, LF, space or colon)"
        )
    if _VALUE_CONTROL.search(value):
        return (
            f"the value of header {short_repr(name)} contains CR, LF or another control character"
        )
    return None


def subprotocol_problem(value: str) -> str | None:
    """What is wrong with one subprotocol, or ``None``. Never quotes it: some services pass a
    token as a subprotocol."""
    if _TOKEN.fullmatch(value):
        return None
    return "a subprotocol is an HTTP token: letters, digits and !#$%&'*+-.^_`|~ (no CR, LF, space)"


def url_text_problem(url: str) -> str | None:
    """What makes ``url`` unfit for a request line, or ``None``: spaces and control characters
    (percent-encode them). Never quotes the URL (it may carry credentials)."""
    if _URL_FORBIDDEN.search(url):
        return "a URL may not contain spaces, CR, LF or other control characters (percent-encode)"
    return None
