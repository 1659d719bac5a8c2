"""How a call's routing values (its session id and stream token) ride on each provider.

A provider stream finds its session at the gateway by two values, ``session`` and ``token``
(:data:`~actors.gateway.streams.SESSION_PARAMETER`, ``TOKEN_PARAMETER``). Twilio and Telnyx's
TeXML carry them as custom parameters as they are. Two carriers need an encoding, written
here once for the provider that places the call and the gateway that reads the stream:

- Telnyx Call Control's ``client_state``, which must be base64 (Telnyx's OpenAPI:
  "It must be a valid Base-64 encoded string") and comes back in the stream's ``start``: the
  base64 of a compact JSON object of strings.
- Plivo's ``extraHeaders``, whose keys and values may only hold ``[A-Za-z0-9]`` (Plivo's
  ``<Stream>`` reference: "Only characters [A-Z], [a-z], [0-9] allowed", at most 512 bytes):
  a session id and a token are URL-safe base64 (``-`` and ``_``), so they go as lowercase hex
  of their UTF-8.

Pure functions; the decoders never raise for what a peer sends (they return ``None`` or leave
the value out).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping

__all__ = [
    "HEX_VALUES",
    "decode_client_state",
    "decode_extra_headers",
    "encode_client_state",
    "encode_extra_headers",
]

#: The routing values Plivo's extra headers carry hex-encoded (a stream credential's nonce,
#: :func:`actors.signing.stream_nonce`, is URL-safe base64: ``-`` and ``_`` among it).
HEX_VALUES = frozenset({"session", "token", "nonce"})
_PLIVO_TEXT = re.compile(r"[A-Za-z0-9]+")
_PLIVO_MAX = 512  # bytes of the whole extraHeaders attribute


def encode_client_state(values: Mapping[str, str]) -> str:
    """``values`` as Telnyx's ``client_state``: base64 of their JSON object."""
    text = json.dumps(dict(values), separators=(",", ":"), sort_keys=True)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def decode_client_state(client_state: str | None) -> dict[str, str] | None:
    """What :func:`encode_client_state` made, or ``None`` for anything else."""
    if not client_state:
        return None
    try:
        data = json.loads(base64.b64decode(client_state, validate=True))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if type(data) is not dict or not all(type(v) is str for v in data.values()):
        return None
    return data


def encode_extra_headers(values: Mapping[str, str]) -> str:
    """``values`` as Plivo's ``extraHeaders`` (``k=v,k=v``): the routing values
    (:data:`HEX_VALUES`) hex-encoded, every other key and value as it is, which must then be
    ``[A-Za-z0-9]`` (``ValueError`` naming the key otherwise, or when the whole is over
    Plivo's 512 bytes)."""
    items = []
    for key, given in values.items():
        value = given.encode("utf-8").hex() if key in HEX_VALUES else given
        for what, text in (("name", key), ("value", value)):
            if not _PLIVO_TEXT.fullmatch(text):
                raise ValueError(
                    f"Plivo's extraHeaders take only letters and digits: the {what} of "
                    f"parameter {key[:32]!r} has others"
                )
        items.append(f"{key}={value}")
    joined = ",".join(items)
    if len(joined) > _PLIVO_MAX:
        raise ValueError(f"Plivo's extraHeaders hold at most {_PLIVO_MAX} bytes")
    return joined


def decode_extra_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The parameters :func:`encode_extra_headers` carried, routing values decoded (one that
    is not hex of UTF-8 is left out)."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key not in HEX_VALUES:
            out[key] = value
            continue
        try:
            out[key] = bytes.fromhex(value).decode("utf-8")
        except ValueError:  # not hex, or not UTF-8 (UnicodeDecodeError is a ValueError)
            continue
    return out
