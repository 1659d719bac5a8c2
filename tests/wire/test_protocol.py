"""The client side of RFC 6455 (actors.wire), byte by byte: no socket anywhere.

Server frames are written out by hand (or by :func:`frame`, a plain reading of RFC 6455 5.2);
client frames are checked against the examples of RFC 6455 5.7 and a byte-wise XOR.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from actors.errors import TransportError
from actors.wire import (
    ClientProtocol,
    Close,
    CloseCode,
    InvalidState,
    InvalidUTF8,
    PayloadTooBig,
    Ping,
    Pong,
    ProtocolError,
    State,
    WireError,
)
from actors.wire.frames import build_frame, random_mask_keys

pytestmark = pytest.mark.timeout(30)

KEY = bytes((0x37, 0xFA, 0x21, 0x3D))  # the masking key of RFC 6455 5.7's examples
HELLO = bytes((0x48, 0x65, 0x6C, 0x6C, 0x6F))
MASKED_HELLO = bytes((0x7F, 0x9F, 0x4D, 0x51, 0x58))


def client(max_message_bytes: int | None = 1 << 20) -> ClientProtocol:
    return ClientProtocol(max_message_bytes=max_message_bytes, mask_keys=lambda: KEY)


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked server frame, RFC 6455 5.2, the plain way."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


def unmask(data: bytes) -> tuple[int, bytes, bytes]:
    """``(first byte, key, payload)`` of one masked client frame, XOR byte by byte."""
    assert data[1] & 0x80, "a client frame must be masked"
    size, pos = data[1] & 0x7F, 2
    if size == 126:
        size, pos = int.from_bytes(data[2:4], "big"), 4
    elif size == 127:
        size, pos = int.from_bytes(data[2:10], "big"), 10
    key = data[pos : pos + 4]
    body = data[pos + 4 :]
    assert len(body) == size
    return data[0], key, bytes(b ^ key[i % 4] for i, b in enumerate(body))


def close_frame_sent(protocol: ClientProtocol) -> tuple[int, str]:
    first, _, payload = unmask(protocol.data_to_send())
    assert first == 0x88
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def assert_failed(protocol: ClientProtocol, kind: type[ProtocolError], code: int) -> None:
    """The connection failed: recorded, told to the peer with ``code``, closed."""
    assert type(protocol.failure) is kind
    assert protocol.failure.code == code
    assert protocol.state is State.CLOSED
    assert close_frame_sent(protocol) == (code, protocol.failure.close_reason)
    assert protocol.close_sent == Close(code, protocol.failure.close_reason)
    protocol.receive_data(frame(1, b"after"))  # the rest of the input is ignored
    assert protocol.events_received() == []
    assert protocol.data_to_send() == b""


# -- RFC 6455 5.7, the examples ------------------------------------------------------------


def test_rfc_single_frame_unmasked_text() -> None:
    protocol = client()
    protocol.receive_data(bytes((0x81, 0x05)) + HELLO)
    assert protocol.events_received() == ["Hello"]
    assert protocol.data_to_send() == b""


def test_rfc_single_frame_masked_text_is_what_the_client_sends() -> None:
    protocol = client()
    protocol.send_text("Hello")
    assert protocol.data_to_send() == bytes((0x81, 0x85)) + KEY + MASKED_HELLO


def test_text_already_encoded_is_sent_as_it_is() -> None:
    protocol = client()
    protocol.send_text("d\u00e9j\u00e0")
    protocol.send_text("d\u00e9j\u00e0".encode())
    sent = protocol.data_to_send()
    assert sent[: len(sent) // 2] == sent[len(sent) // 2 :]
    assert unmask(sent[: len(sent) // 2]) == (0x81, KEY, "d\u00e9j\u00e0".encode())


def test_rfc_masked_frame_from_the_server_is_a_protocol_error() -> None:
    protocol = client()
    protocol.receive_data(bytes((0x81, 0x85)) + KEY + MASKED_HELLO)
    assert protocol.events_received() == []
    assert str(protocol.failure) == "a masked frame from the server"
    assert_failed(protocol, ProtocolError, 1002)


def test_rfc_fragmented_unmasked_text() -> None:
    protocol = client()
    protocol.receive_data(bytes((0x01, 0x03, 0x48, 0x65, 0x6C)))
    assert protocol.events_received() == []  # a message is delivered whole
    protocol.receive_data(bytes((0x80, 0x02, 0x6C, 0x6F)))
    assert protocol.events_received() == ["Hello"]


def test_rfc_ping_is_answered_with_the_masked_pong() -> None:
    protocol = client()
    protocol.receive_data(bytes((0x89, 0x05)) + HELLO)
    assert protocol.events_received() == [Ping(b"Hello")]
    assert protocol.data_to_send() == bytes((0x8A, 0x85)) + KEY + MASKED_HELLO


def test_rfc_256_bytes_binary_uses_the_16_bit_length() -> None:
    payload = bytes(range(256))
    protocol = client()
    protocol.receive_data(bytes((0x82, 0x7E, 0x01, 0x00)) + payload)
    assert protocol.events_received() == [payload]
    protocol.send_binary(payload)
    sent = protocol.data_to_send()
    assert sent[:8] == bytes((0x82, 0xFE, 0x01, 0x00)) + KEY
    assert unmask(sent) == (0x82, KEY, payload)


def test_rfc_64_kib_binary_uses_the_64_bit_length() -> None:
    payload = os.urandom(65536)
    protocol = client()
    protocol.receive_data(bytes((0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0)) + payload)
    assert protocol.events_received() == [payload]
    protocol.send_binary(payload)
    sent = protocol.data_to_send()
    assert sent[:14] == bytes((0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0)) + KEY
    assert unmask(sent) == (0x82, KEY, payload)


# -- masking -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 125, 126, 127, 160, 65535, 65536])
def test_masking_matches_a_bytewise_xor_at_every_length(size: int) -> None:
    rng = random.Random(size)
    for _ in range(3):
        key = rng.randbytes(4)
        payload = rng.randbytes(size)
        built = build_frame(0x2, payload, key)
        assert unmask(built) == (0x82, key, payload)
        assert len(built) == size + 4 + (2 if size < 126 else 4 if size < 65536 else 10)


def test_a_frame_without_fin_clears_the_bit() -> None:
    assert build_frame(0x1, b"Hel", KEY, fin=False)[0] == 0x01


def test_random_mask_keys_are_fresh_four_bytes_across_pool_refills() -> None:
    keys = random_mask_keys(8)  # two keys per draw: the third comes from a new pool
    drawn = [keys() for _ in range(64)]
    assert all(type(k) is bytes and len(k) == 4 for k in drawn)
    assert len(set(drawn)) > 60  # os.urandom: repeats are (nearly) impossible
    with pytest.raises(ValueError, match="multiple of 4"):
        random_mask_keys(6)


def test_each_protocol_masks_with_keys_of_its_own_by_default() -> None:
    a, b = ClientProtocol(), ClientProtocol()
    a.send_text("x")
    b.send_text("x")
    assert unmask(a.data_to_send())[1] != unmask(b.data_to_send())[1]


# -- feeding: byte by byte, split anywhere ---------------------------------------------------

STREAM = (
    frame(1, b"first")
    + frame(2, bytes(range(256)))
    + frame(9, b"keepalive")
    + frame(1, "d\u00e9j\u00e0".encode()[:3], fin=False)
    + frame(10, b"pong")
    + frame(0, "d\u00e9j\u00e0".encode()[3:])
    + frame(2, b"\x00" * 70000)
    + frame(1, b"")
)
EVENTS = [
    "first",
    bytes(range(256)),
    Ping(b"keepalive"),
    Pong(b"pong"),
    "d\u00e9j\u00e0",
    b"\x00" * 70000,
    "",
]


def test_a_stream_fed_at_once_gives_every_event() -> None:
    protocol = client()
    protocol.receive_data(STREAM)
    assert protocol.events_received() == EVENTS
    assert unmask(protocol.data_to_send()) == (0x8A, KEY, b"keepalive")


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    protocol = client()
    events = []
    for i in range(len(STREAM)):
        protocol.receive_data(STREAM[i : i + 1])
        events.extend(protocol.events_received())
    assert events == EVENTS
    assert unmask(protocol.data_to_send()) == (0x8A, KEY, b"keepalive")


def test_a_stream_split_in_two_anywhere_gives_the_same_events() -> None:
    small = STREAM[: -len(frame(2, b"\x00" * 70000)) - 2] + frame(1, b"")
    expected = [e for e in EVENTS if e != b"\x00" * 70000]
    for cut in range(len(small) + 1):
        protocol = client()
        protocol.receive_data(small[:cut])
        protocol.receive_data(small[cut:])
        assert protocol.events_received() == expected, cut


def test_buffers_of_any_type_give_bytes_events() -> None:
    protocol = client()
    protocol.receive_data(bytearray(frame(2, b"ab")))
    protocol.receive_data(memoryview(frame(2, b"cd")))
    events = protocol.events_received()
    assert events == [b"ab", b"cd"]
    assert all(type(e) is bytes for e in events)


def test_events_are_handed_out_once() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"a"))
    assert protocol.events_received() == ["a"]
    assert protocol.events_received() == []
    protocol.receive_data(b"")
    assert protocol.events_received() == []


# -- fragmentation and control frames between fragments --------------------------------------


def test_binary_fragments_with_empty_ones_are_joined() -> None:
    protocol = client()
    protocol.receive_data(
        frame(2, b"ab", fin=False) + frame(0, b"", fin=False) + frame(0, b"cd", fin=False)
    )
    protocol.receive_data(frame(0, b""))
    assert protocol.events_received() == [b"abcd"]


def test_a_ping_between_fragments_is_answered_and_the_message_completes() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"Hel", fin=False) + frame(9, b"p") + frame(0, b"lo"))
    assert protocol.events_received() == [Ping(b"p"), "Hello"]
    assert unmask(protocol.data_to_send()) == (0x8A, KEY, b"p")


def test_a_close_between_fragments_ends_the_message_unfinished() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"Hel", fin=False) + frame(8, b"\x03\xe8") + frame(0, b"lo"))
    assert protocol.events_received() == [Close(1000, "")]
    assert protocol.state is State.CLOSED


def test_fragments_after_a_message_of_the_other_type_are_separate() -> None:
    protocol = client()
    protocol.receive_data(frame(2, b"\x01", fin=False) + frame(0, b"\x02"))
    protocol.receive_data(frame(1, b"t", fin=False) + frame(0, b"ext"))
    assert protocol.events_received() == [b"\x01\x02", "text"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (frame(0, b"x"), "a continuation frame without a message to continue"),
        (frame(1, b"a", fin=False) + frame(1, b"b"), "a new message inside a fragmented one"),
        (frame(1, b"a", fin=False) + frame(2, b"b"), "a new message inside a fragmented one"),
        (frame(9, b"p", fin=False), "a control frame fragmented or over 125 bytes"),
        (frame(9, b"p" * 126), "a control frame fragmented or over 125 bytes"),
        (frame(8, b"\x03\xe8" + b"r" * 124), "a control frame fragmented or over 125 bytes"),
        (frame(1, b"x", rsv=4), "reserved bits set, and no extension was negotiated"),
        (frame(1, b"x", rsv=2), "reserved bits set, and no extension was negotiated"),
        (frame(1, b"x", rsv=1), "reserved bits set, and no extension was negotiated"),
        (bytes((0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1)), "most significant bit set"),
    ],
)
def test_frames_that_break_the_protocol_fail_it_with_1002(data: bytes, why: str) -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"before") + data)
    assert protocol.events_received() == ["before"]  # what came first is still delivered
    assert why in str(protocol.failure)
    assert_failed(protocol, ProtocolError, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes_fail_it_from_the_header(opcode: int) -> None:
    protocol = client()
    protocol.receive_data(frame(opcode, b"payload never read")[:2])
    assert str(protocol.failure) == f"reserved opcode {opcode}"
    assert_failed(protocol, ProtocolError, 1002)


# -- oversize ------------------------------------------------------------------------------


def test_a_frame_over_the_limit_fails_from_its_header_before_the_payload() -> None:
    protocol = client(max_message_bytes=1000)
    protocol.receive_data(bytes((0x82, 0x7E)))
    assert protocol.failure is None  # the length is not known yet
    protocol.receive_data((5000).to_bytes(2, "big"))  # the header is all there is
    assert isinstance(protocol.failure, PayloadTooBig)
    assert (protocol.failure.size, protocol.failure.limit) == (5000, 1000)
    assert str(protocol.failure) == "a frame of 5000 bytes exceeds max_message_bytes=1000"
    assert_failed(protocol, PayloadTooBig, 1009)


def test_fragments_over_the_limit_together_fail_at_the_one_that_crosses_it() -> None:
    protocol = client(max_message_bytes=10)
    protocol.receive_data(frame(2, b"x" * 6, fin=False) + frame(0, b"y" * 4, fin=False))
    assert protocol.failure is None  # exactly the limit so far
    protocol.receive_data(bytes((0x80, 0x01)))
    assert str(protocol.failure) == "a frame of 11 bytes exceeds max_message_bytes=10"
    assert_failed(protocol, PayloadTooBig, 1009)


def test_the_limit_is_per_message_and_control_frames_do_not_count() -> None:
    protocol = client(max_message_bytes=4)
    protocol.receive_data(frame(2, b"abcd") + frame(1, b"ab", fin=False) + frame(9, b"x" * 100))
    protocol.receive_data(frame(0, b"cd") + frame(2, b"efgh"))
    assert protocol.events_received() == [b"abcd", Ping(b"x" * 100), "abcd", b"efgh"]
    assert protocol.failure is None


def test_no_limit_when_max_message_bytes_is_none() -> None:
    protocol = client(max_message_bytes=None)
    protocol.receive_data(frame(2, b"z" * 200_000))
    assert protocol.events_received() == [b"z" * 200_000]


# -- UTF-8 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"ok \xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"],
    ids=["ff", "truncated", "overlong", "surrogate", "over-U+10FFFF", "lone-continuation"],
)
def test_invalid_utf8_in_a_text_frame_fails_it_with_1007(payload: bytes) -> None:
    protocol = client()
    protocol.receive_data(frame(1, payload))
    assert str(protocol.failure) == "invalid UTF-8 in a text frame"
    assert_failed(protocol, InvalidUTF8, 1007)


def test_invalid_binary_is_not_utf8_checked() -> None:
    protocol = client()
    protocol.receive_data(frame(2, b"\xff\xfe"))
    assert protocol.events_received() == [b"\xff\xfe"]


def test_a_character_split_across_fragments_passes() -> None:
    text = "\u00e9\u20ac\U0001f600"  # 2, 3 and 4 bytes of UTF-8
    data = text.encode()
    protocol = client()
    # Cut inside every character: 1 | 2+1 | 2+... one byte at a time at the end.
    pieces = [data[:1], data[1:3], data[3:6], data[6:7], data[7:8], data[8:]]
    stream = frame(1, pieces[0], fin=False)
    stream += b"".join(frame(0, p, fin=False) for p in pieces[1:-1]) + frame(0, pieces[-1])
    protocol.receive_data(stream)
    assert protocol.events_received() == [text]
    assert protocol.failure is None


def test_invalid_utf8_fails_at_the_fragment_that_holds_it() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"fine", fin=False) + frame(0, b"\xff", fin=False))
    assert isinstance(protocol.failure, InvalidUTF8)  # not waiting for the last fragment
    assert_failed(protocol, InvalidUTF8, 1007)


def test_a_character_cut_short_by_the_last_fragment_fails() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"\xe2\x82", fin=False))
    assert protocol.failure is None  # it may still be completed
    protocol.receive_data(frame(0, b"!"))
    assert_failed(protocol, InvalidUTF8, 1007)


def test_consecutive_fragmented_texts_decode_independently() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"a\xe2", fin=False) + frame(0, b"\x82\xac"))
    protocol.receive_data(frame(1, b"b", fin=False) + frame(0, b"c"))
    assert protocol.events_received() == ["a\u20ac", "bc"]


# -- the close handshake ---------------------------------------------------------------------


def test_the_peer_closes_first_and_its_close_is_echoed() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"last") + frame(8, b"\x03\xe9bye") + frame(1, b"late"))
    assert protocol.events_received() == ["last", Close(1001, "bye")]
    assert close_frame_sent(protocol) == (1001, "")  # the code echoed, at once
    assert protocol.state is State.CLOSED
    assert protocol.close_rcvd == Close(1001, "bye")
    assert protocol.close_sent == Close(1001, "")
    assert protocol.close_rcvd_then_sent is True
    assert protocol.failure is None
    protocol.receive_data(frame(1, b"later"))  # nothing after a close frame counts
    assert protocol.events_received() == []


def test_a_close_without_a_code_reads_1005_and_is_answered_1000() -> None:
    protocol = client()
    protocol.receive_data(frame(8))
    assert protocol.events_received() == [Close(CloseCode.NO_STATUS, "")]
    assert close_frame_sent(protocol) == (1000, "")


def test_we_close_first_and_the_peers_close_ends_it() -> None:
    protocol = client()
    protocol.send_close(1000, "done")
    assert protocol.data_to_send() == build_frame(0x8, b"\x03\xe8done", KEY)
    assert protocol.state is State.CLOSING
    assert protocol.close_sent == Close(1000, "done")
    # The peer had not seen our close yet: its messages still arrive; a ping is answered.
    protocol.receive_data(frame(2, b"in flight") + frame(9, b"p"))
    assert protocol.events_received() == [b"in flight", Ping(b"p")]
    assert unmask(protocol.data_to_send()) == (0x8A, KEY, b"p")
    protocol.send_ping(b"still there?")  # a control frame, not data: allowed
    assert unmask(protocol.data_to_send()) == (0x89, KEY, b"still there?")
    protocol.receive_data(frame(8, b"\x03\xe8"))
    assert protocol.events_received() == [Close(1000, "")]
    assert protocol.data_to_send() == b""  # no echo of an answer
    assert protocol.state is State.CLOSED
    assert protocol.close_rcvd_then_sent is False


def test_a_close_without_a_code_can_be_sent() -> None:
    protocol = client()
    protocol.send_close(None)
    assert protocol.data_to_send() == bytes((0x88, 0x80)) + KEY
    assert protocol.close_sent == Close(CloseCode.NO_STATUS, "")


def test_a_long_reason_is_cut_to_123_bytes_without_splitting_a_character() -> None:
    protocol = client()
    protocol.send_close(4000, "\u00e9" * 70)  # 140 bytes of UTF-8
    code, reason = close_frame_sent(protocol)
    assert (code, reason) == (4000, "\u00e9" * 61)  # 122 bytes: the 62nd would not fit
    assert protocol.close_sent == Close(4000, "\u00e9" * 61)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_a_close_code_not_allowed_on_the_wire_is_not_sent(code: int) -> None:
    protocol = client()
    with pytest.raises(ValueError, match=f"close code {code} may not be sent"):
        protocol.send_close(code)
    assert protocol.state is State.OPEN
    assert protocol.data_to_send() == b""


def test_a_close_without_a_code_cannot_carry_a_reason() -> None:
    with pytest.raises(ValueError, match="without a code"):
        client().send_close(None, "why")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_a_received_close_code_not_allowed_on_the_wire_fails_it(code: int) -> None:
    protocol = client()
    protocol.receive_data(frame(8, code.to_bytes(2, "big")))
    assert str(protocol.failure) == f"close code {code} is not allowed on the wire"
    assert protocol.close_rcvd is None
    assert_failed(protocol, ProtocolError, 1002)


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4404, 4999])
def test_received_close_codes_allowed_on_the_wire_pass(code: int) -> None:
    protocol = client()
    protocol.receive_data(frame(8, code.to_bytes(2, "big") + b"why"))
    assert protocol.events_received() == [Close(code, "why")]
    assert close_frame_sent(protocol) == (code, "")


def test_a_one_byte_close_payload_fails_it() -> None:
    protocol = client()
    protocol.receive_data(frame(8, b"\x03"))
    assert str(protocol.failure) == "a close frame with a 1-byte payload"
    assert_failed(protocol, ProtocolError, 1002)


def test_a_close_reason_that_is_not_utf8_fails_it_with_1007() -> None:
    protocol = client()
    protocol.receive_data(frame(8, b"\x03\xe8\xff"))
    assert str(protocol.failure) == "invalid UTF-8 in a close frame's reason"
    assert_failed(protocol, InvalidUTF8, 1007)


def test_a_fault_after_our_close_sends_no_second_close_frame() -> None:
    protocol = client()
    protocol.send_close(1000)
    protocol.data_to_send()
    protocol.receive_data(frame(0, b"stray"))
    assert isinstance(protocol.failure, ProtocolError)
    assert protocol.state is State.CLOSED
    assert protocol.data_to_send() == b""
    assert protocol.close_sent == Close(1000, "")


# -- states and what they forbid -------------------------------------------------------------


def test_a_new_protocol_is_open_and_sends_nothing() -> None:
    protocol = client()
    assert protocol.state is State.OPEN
    assert protocol.data_to_send() == b""
    assert (protocol.failure, protocol.close_rcvd, protocol.close_sent) == (None, None, None)
    assert protocol.close_rcvd_then_sent is None


def test_messages_queue_in_order_until_taken() -> None:
    protocol = client()
    protocol.send_text("a")
    protocol.send_binary(b"b")
    protocol.send_ping()
    protocol.send_close()
    assert protocol.data_to_send() == b"".join(
        (
            build_frame(0x1, b"a", KEY),
            build_frame(0x2, b"b", KEY),
            build_frame(0x9, b"", KEY),
            build_frame(0x8, b"\x03\xe8", KEY),
        )
    )


def test_while_closing_no_data_and_no_second_close_may_be_sent() -> None:
    protocol = client()
    protocol.send_close()
    with pytest.raises(InvalidState, match="cannot send a text message: the connection is closing"):
        protocol.send_text("x")
    with pytest.raises(InvalidState, match="binary message: the connection is closing"):
        protocol.send_binary(b"x")
    with pytest.raises(InvalidState, match="close frame: the connection is closing"):
        protocol.send_close()


@pytest.mark.parametrize(
    "close",
    [
        lambda p: p.receive_data(frame(8, b"\x03\xe8")),
        lambda p: p.receive_data(frame(0, b"x")),
        lambda p: p.receive_eof(),
    ],
    ids=["close-handshake", "failure", "eof"],
)
def test_once_closed_nothing_may_be_sent(close: Callable[[ClientProtocol], None]) -> None:
    protocol = client()
    close(protocol)
    assert protocol.state is State.CLOSED
    protocol.data_to_send()
    for send in (
        lambda: protocol.send_text("x"),
        lambda: protocol.send_binary(b"x"),
        protocol.send_ping,
        protocol.send_close,
    ):
        with pytest.raises(InvalidState, match="closed"):
            send()
    assert protocol.data_to_send() == b""


def test_the_end_of_the_stream_closes_it_abnormally() -> None:
    protocol = client()
    protocol.receive_data(frame(1, b"whole") + frame(1, b"cut short")[:4])
    protocol.receive_eof()
    assert protocol.events_received() == ["whole"]  # a partial frame is no event
    assert protocol.state is State.CLOSED
    assert protocol.close_rcvd is None  # no close frame: 1006 for the I/O module
    assert protocol.failure is None
    assert protocol.data_to_send() == b""


def test_data_after_the_end_of_the_stream_is_a_bug() -> None:
    protocol = client()
    protocol.receive_eof()
    with pytest.raises(InvalidState, match="after the end of the stream"):
        protocol.receive_data(b"\x81\x00")
    with pytest.raises(InvalidState, match="received already"):
        protocol.receive_eof()


def test_the_end_of_the_stream_after_a_close_or_a_failure_is_fine() -> None:
    for data in (frame(8, b"\x03\xe8"), frame(0, b"x")):
        protocol = client()
        protocol.receive_data(data)
        protocol.receive_eof()
        assert protocol.state is State.CLOSED


def test_a_ping_carries_at_most_125_bytes() -> None:
    protocol = client()
    protocol.send_ping(b"p" * 125)
    with pytest.raises(ValueError, match="at most 125 bytes"):
        protocol.send_ping(b"p" * 126)


def test_an_unsolicited_pong_is_an_event_and_is_not_answered() -> None:
    protocol = client()
    protocol.receive_data(frame(10, b"beat"))
    assert protocol.events_received() == [Pong(b"beat")]
    assert protocol.data_to_send() == b""


def test_the_exceptions_sit_under_the_package_root() -> None:
    for kind in (ProtocolError, PayloadTooBig, InvalidUTF8, InvalidState):
        assert issubclass(kind, WireError)
        assert issubclass(kind, TransportError)
    assert issubclass(InvalidState, RuntimeError)
    assert (ProtocolError.code, PayloadTooBig.code, InvalidUTF8.code) == (1002, 1009, 1007)
