"""The shared protocol constants (actors.wire.constants), and that the wire layer stays a floor:
it imports nothing of ours but actors.errors, and no socket, thread, clock or I/O library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from actors import messages
from actors.gateway import server
from actors.wire import constants
from actors.wire.constants import (
    ACCOUNT_SID,
    CALL_SID,
    RECEIVED_HEADER,
    RESUME_FROM_HEADER,
    CloseCode,
    is_sendable,
)

WIRE = Path(constants.__file__).parent

# RFC 6455 7.4.1 and the IANA registry, as published, and ours.
REGISTERED = {
    "NORMAL_CLOSURE": 1000,
    "GOING_AWAY": 1001,
    "PROTOCOL_ERROR": 1002,
    "UNSUPPORTED_DATA": 1003,
    "NO_STATUS": 1005,
    "ABNORMAL": 1006,
    "INVALID_PAYLOAD": 1007,
    "POLICY_VIOLATION": 1008,
    "MESSAGE_TOO_BIG": 1009,
    "MANDATORY_EXTENSION": 1010,
    "INTERNAL_ERROR": 1011,
    "SERVICE_RESTART": 1012,
    "TRY_AGAIN_LATER": 1013,
    "BAD_GATEWAY": 1014,
    "TLS_HANDSHAKE": 1015,
    "CALL_UNKNOWN": 4404,
    "SESSION_FENCED": 4409,
}


def test_close_codes_have_their_registered_numbers() -> None:
    assert {code.name: code.value for code in CloseCode} == REGISTERED


def test_close_codes_are_the_numbers_a_peer_sends() -> None:
    assert CloseCode.NORMAL_CLOSURE == 1000
    assert CloseCode(1009) is CloseCode.MESSAGE_TOO_BIG
    assert CloseCode.INTERNAL_ERROR.to_bytes(2, "big") == b"\x03\xf3"
    assert {1001: "going away"}[CloseCode.GOING_AWAY] == "going away"


def test_exactly_the_rfc_codes_are_sendable() -> None:
    expected = {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}
    assert {code for code in range(70_000) if is_sendable(code)} == expected
    assert not any(is_sendable(c) for c in (-1, 1004, 1005, 1006, 1015, 2999, 5000))
    assert is_sendable(CloseCode.CALL_UNKNOWN)


def test_the_codes_that_only_report_a_close_are_not_sendable() -> None:
    never_sent = {c for c in CloseCode if not is_sendable(c)}
    assert never_sent == {CloseCode.NO_STATUS, CloseCode.ABNORMAL, CloseCode.TLS_HANDSHAKE}


def test_the_gateway_re_exports_the_single_definitions() -> None:
    """The gateway's users find these on actors.gateway.server, as they always have: they are
    the wire layer's, not copies."""
    assert server.CALL_UNKNOWN == CloseCode.CALL_UNKNOWN
    assert server.RESUME_FROM_HEADER is RESUME_FROM_HEADER
    assert server.RECEIVED_HEADER is RECEIVED_HEADER


def test_the_messages_close_codes_are_the_wire_layers_as_plain_ints() -> None:
    for name in ("NORMAL_CLOSURE", "GOING_AWAY", "INVALID_PAYLOAD", "MESSAGE_TOO_BIG"):
        value = getattr(messages, name)
        assert value == CloseCode[name]
        assert type(value) is int  # a Close shows 1000, not <CloseCode.NORMAL_CLOSURE: 1000>
    assert messages.INTERNAL_ERROR == CloseCode.INTERNAL_ERROR
    assert messages.ABNORMAL_CLOSURE == CloseCode.ABNORMAL
    assert messages.is_sendable_close_code is is_sendable


def test_the_resume_headers() -> None:
    assert RESUME_FROM_HEADER == "X-Resume-From"
    assert RECEIVED_HEADER == "X-Gateway-Received"
    # websocket-client lowercases the names of response headers: look that spelling up.
    assert RECEIVED_HEADER.lower() == "x-gateway-received"


@pytest.mark.parametrize(
    ("pattern", "prefix"), [(ACCOUNT_SID, "AC"), (CALL_SID, "CA")], ids=["account", "call"]
)
def test_twilio_sid_shapes(pattern: re.Pattern[str], prefix: str) -> None:
    assert pattern.fullmatch(prefix + "0123456789abcdefABCDEF0123456789")
    assert pattern.fullmatch(prefix + "0" * 32)
    for bad in (
        prefix + "0" * 31,
        prefix + "0" * 33,
        prefix + "g" * 32,
        prefix.lower() + "0" * 32,
        "XX" + "0" * 32,
        "",
    ):
        assert not pattern.fullmatch(bad), bad


# -- the wire layer is a floor ---------------------------------------------------------------

# Standard-library modules it may use: pure computation, no socket, thread, clock or process.
# (os: for os.urandom, the masking keys' only source.)
ALLOWED_STDLIB = {
    "__future__",
    "codecs",
    "collections",
    "collections.abc",
    "dataclasses",
    "enum",
    "os",
    "re",
    "struct",
    "typing",
}
ALLOWED_OURS = {"errors"}  # ``from ..errors import ...``: a floor below this one


def test_the_wire_layer_imports_only_pure_modules() -> None:
    found = {}
    for path in sorted(WIRE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[f"{path.name}: import {alias.name}"] = alias.name in ALLOWED_STDLIB
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 0:
                    ok = module in ALLOWED_STDLIB
                elif node.level == 1:
                    ok = (WIRE / f"{module}.py").exists()  # a sibling
                else:
                    ok = node.level == 2 and module in ALLOWED_OURS
                found[f"{path.name}: from {'.' * node.level}{module}"] = ok
    assert found, "no imports found: wrong folder?"
    assert [line for line, ok in found.items() if not ok] == []
