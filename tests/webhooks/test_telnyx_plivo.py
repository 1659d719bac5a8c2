"""Telnyx's Ed25519 and Plivo's V3 webhook signatures, the answer documents, and the routing
values' carriers: pure functions, checked with vectors computed here independently (a key
pair of our own for Ed25519, hmac/hashlib by hand for V3)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from actors.emulator.plivo import read_answer
from actors.routing import (
    decode_client_state,
    decode_extra_headers,
    encode_client_state,
    encode_extra_headers,
)
from actors.safexml import parse_xml
from actors.webhooks.calls import ProviderKeys, plivo_machine, telnyx_event
from actors.webhooks.plivo import (
    dial_xml,
    signature_v3,
    signed_string,
    stream_xml,
    verify_signature_v3,
)
from actors.webhooks.telnyx import load_public_key, stream_texml, verify_webhook
from actors.webhooks.twilio import InboundCall, Refusal, StatusEvent

BODY = b'{"data":{"event_type":"call.answered","payload":{"call_control_id":"v3:abc"}}}'
NOW = 1_767_225_600


@pytest.fixture(scope="module")
def keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


def signed(private: Ed25519PrivateKey, stamp: int, body: bytes) -> dict[str, str]:
    signature = private.sign(f"{stamp}|".encode() + body)
    return {
        "Telnyx-Signature-Ed25519": base64.b64encode(signature).decode(),
        "Telnyx-Timestamp": str(stamp),
    }


def test_a_telnyx_webhook_signed_with_the_account_key_is_accepted(
    keys: tuple[Ed25519PrivateKey, str],
) -> None:
    private, public = keys
    assert verify_webhook(public, signed(private, NOW, BODY), BODY, now=NOW + 10)
    assert verify_webhook(load_public_key(public), signed(private, NOW, BODY), BODY, now=NOW)


def test_forged_altered_and_stale_telnyx_webhooks_are_refused(
    keys: tuple[Ed25519PrivateKey, str],
) -> None:
    private, public = keys
    headers = signed(private, NOW, BODY)
    assert not verify_webhook(public, headers, BODY + b" ", now=NOW)  # body altered
    assert not verify_webhook(public, {**headers, "Telnyx-Timestamp": str(NOW + 1)}, BODY, now=NOW)
    assert not verify_webhook(public, headers, BODY, now=NOW + 301)  # stale: replayed later
    assert not verify_webhook(public, headers, BODY, now=NOW - 301)  # from the future
    other = Ed25519PrivateKey.generate()
    assert not verify_webhook(public, signed(other, NOW, BODY), BODY, now=NOW)  # forged
    for broken in ({}, {"telnyx-timestamp": str(NOW)}, {**headers, "Telnyx-Timestamp": "x"}):
        assert not verify_webhook(public, broken, BODY, now=NOW)
    junk = {**headers, "Telnyx-Signature-Ed25519": "not base64!"}
    assert not verify_webhook(public, junk, BODY, now=NOW)
    with pytest.raises(ValueError, match="32 bytes"):
        load_public_key("c2hvcnQ=")


def v3_by_hand(token: str, message: str) -> str:
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_plivo_v3_signs_what_its_documentation_says() -> None:
    token, nonce = "MY_AUTH_TOKEN", "05429567804466091622"
    url = "https://example.com/abcd?foo=bar&a=2&a=1"
    form = [("To", "+15550100"), ("CallUUID", "c1"), ("From", "+15550199")]
    # POST: URL, ?sorted query, ".", then the sorted POST params name+value with nothing between.
    expected = "https://example.com/abcd?a=1&a=2&foo=bar.CallUUIDc1From+15550199To+15550100"
    assert signed_string("POST", url, form) == expected
    assert signature_v3(token, "POST", url, nonce, form) == v3_by_hand(token, f"{expected}.{nonce}")
    # POST without a query: "?" then the params; GET: the sorted query only.
    assert (
        signed_string("POST", "https://x.io/a", [("B", "2"), ("A", "1")]) == "https://x.io/a?A1B2"
    )
    assert signed_string("GET", "https://x.io/a?b=2&a=1") == "https://x.io/a?a=1&b=2"
    assert signed_string("GET", "https://x.io/a") == "https://x.io/a"


def test_plivo_webhooks_verify_and_forgeries_are_refused() -> None:
    token, nonce, url = "tok", "123", "https://voice.example.com/plivo/answer"
    form = [("CallUUID", "u1"), ("From", "+1555")]
    good = signature_v3(token, "POST", url, nonce, form)
    headers = {"X-Plivo-Signature-V3": good, "X-Plivo-Signature-V3-Nonce": nonce}
    assert verify_signature_v3(token, "POST", url, headers, form)
    several = {**headers, "X-Plivo-Signature-V3": f"{v3_by_hand('other', 'x')},{good}"}
    assert verify_signature_v3(token, "POST", url, several, form)  # one of several matches
    assert not verify_signature_v3("wrong", "POST", url, headers, form)
    assert not verify_signature_v3(token, "POST", url, headers, [*form, ("To", "+1")])
    assert not verify_signature_v3(token, "POST", url + "x", headers, form)
    assert not verify_signature_v3(
        token, "POST", url, {**headers, "X-Plivo-Signature-V3-Nonce": "9"}, form
    )
    assert not verify_signature_v3(token, "POST", url, {}, form)


def test_the_answer_documents_cannot_be_broken_by_a_value() -> None:
    hostile = {"q": "a\"b'c</Parameter></Stream><Hangup/>", "amp": "&amp; é"}
    texml = stream_texml("wss://gw.example/telnyx", hostile)
    root = parse_xml(texml)
    stream = root.find("Connect/Stream")
    assert stream is not None and stream.get("bidirectionalMode") == "rtp"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == hostile
    with pytest.raises(ValueError):
        stream_texml("wss://gw/telnyx", {"x": "\x00"})
    xml = stream_xml("wss://gw.example/plivo", {"session": "a-b_c", "token": "t-_", "app": "x1"})
    url, headers, content_type = read_answer(xml)
    assert (url, content_type) == ("wss://gw.example/plivo", "audio/x-mulaw;rate=8000")
    assert decode_extra_headers(headers) == {"session": "a-b_c", "token": "t-_", "app": "x1"}
    root = parse_xml(xml).find("Stream")
    assert root is not None and root.get("keepCallAlive") == "true"
    with pytest.raises(ValueError, match="letters and digits"):
        stream_xml("wss://gw/plivo", {"app": "not,alnum"})


def test_routing_values_round_trip_and_garbage_decodes_to_nothing() -> None:
    # A stream credential of a call streamed again carries a nonce, URL-safe base64.
    values = {"session": "s-1_x", "token": "t" * 43, "nonce": "a-b_c" * 3}
    assert decode_client_state(encode_client_state(values)) == values
    for junk in (
        None,
        "",
        "!!",
        base64.b64encode(b"[1]").decode(),
        base64.b64encode(b"{").decode(),
    ):
        assert decode_client_state(junk) is None
    assert (
        decode_extra_headers(dict(kv.split("=") for kv in encode_extra_headers(values).split(",")))
        == values
    )
    assert decode_extra_headers({"session": "zz", "app": "1"}) == {"app": "1"}  # not hex: left out
    with pytest.raises(ValueError, match="512"):
        encode_extra_headers({"a": "b" * 600})


# -- issue 15's remainders: machine detection, Call Control's incoming calls, dial XML ----------


def _event(kind: str, **payload: str) -> bytes:
    body = {"data": {"event_type": kind, "payload": {"call_control_id": "v3:c1", **payload}}}
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("kind", "result", "answered_by"),
    [
        ("call.machine.detection.ended", "human", "human"),
        ("call.machine.detection.ended", "machine", "machine_start"),
        ("call.machine.detection.ended", "not_sure", "unknown"),
        ("call.machine.premium.detection.ended", "human_business", "human"),
        ("call.machine.premium.detection.ended", "fax_detected", "fax"),
        ("call.machine.premium.detection.ended", "silence", "unknown"),
        ("call.machine.greeting.ended", "beep_detected", "machine_end_beep"),
        ("call.machine.greeting.ended", "ended", "machine_end_other"),
        ("call.machine.premium.greeting.ended", "no_beep_detected", "machine_end_other"),
        ("call.machine.detection.ended", "something_new", "unknown"),
    ],
)
def test_telnyx_machine_detection_results_become_twilios_answered_by(
    keys: tuple[Ed25519PrivateKey, str], kind: str, result: str, answered_by: str
) -> None:
    private, public = keys
    body = _event(kind, result=result, client_state="c2VjcmV0")
    decided = telnyx_event(
        ProviderKeys(telnyx={"t": public}), signed(private, int(time.time()), body), body
    )
    assert not isinstance(decided, Refusal)
    name, event = decided
    assert isinstance(event, StatusEvent)
    assert (name, event.call_id, event.status) == ("t", "v3:c1", "amd")
    assert event.fields["AnsweredBy"] == answered_by
    assert "client_state" not in event.fields  # it holds the stream token


def test_an_incoming_call_initiated_is_a_call_only_for_a_call_control_entry(
    keys: tuple[Ed25519PrivateKey, str],
) -> None:
    private, public = keys
    body = _event(
        "call.initiated", direction="incoming", state="parked", **{"from": "+1555", "to": "+1666"}
    )
    headers = signed(private, int(time.time()), body)
    texml = telnyx_event(ProviderKeys(telnyx={"t": public}), headers, body)
    assert not isinstance(texml, Refusal) and isinstance(texml[1], StatusEvent)
    assert texml[1].status == "initiated"  # a TeXML entry: progress, as before
    keys_cc = ProviderKeys(telnyx={"t": public}, telnyx_call_control=frozenset({"t"}))
    decided = telnyx_event(keys_cc, headers, body)
    assert not isinstance(decided, Refusal)
    call = decided[1]
    assert isinstance(call, InboundCall)
    assert (call.call_id, call.from_, call.to, call.provider) == (
        "v3:c1",
        "+1555",
        "+1666",
        "telnyx",
    )
    no_from = _event("call.initiated", direction="incoming", to="+1666")
    refused = telnyx_event(keys_cc, signed(private, int(time.time()), no_from), no_from)
    assert isinstance(refused, Refusal) and refused.status == 400
    outgoing = _event("call.initiated", direction="outgoing", **{"from": "+1555", "to": "+1666"})
    ours = telnyx_event(keys_cc, signed(private, int(time.time()), outgoing), outgoing)
    assert not isinstance(ours, Refusal) and isinstance(ours[1], StatusEvent)  # a call we placed


def test_plivo_machine_verdicts_and_bad_ones() -> None:
    form = {"CallUUID": "cu", "RequestUUID": "ru", "Direction": "outbound", "Machine": "true"}
    event = plivo_machine(form)
    assert isinstance(event, StatusEvent)
    assert (event.call_id, event.status, event.fields["AnsweredBy"]) == (
        "ru",
        "amd",
        "machine_start",
    )
    human = plivo_machine({**form, "Machine": "false"})
    assert isinstance(human, StatusEvent) and human.fields["AnsweredBy"] == "human"
    for bad in ({**form, "Machine": "maybe"}, {"CallUUID": "cu"}):
        refused = plivo_machine(bad)
        assert isinstance(refused, Refusal) and refused.status == 400


def test_plivo_dial_xml_cannot_be_broken_by_a_value() -> None:
    number = parse_xml(dial_xml("+15550111", caller_id="+15550199"))
    dial = number.find("Dial")
    assert dial is not None and dial.get("callerId") == "+15550199"
    assert [(n.tag, n.text) for n in dial] == [("Number", "+15550111")]
    sip = parse_xml(dial_xml('sip:a@b.example;x="</User><Hangup/>"'))
    user = sip.find("Dial/User")
    assert user is not None and user.text == 'sip:a@b.example;x="</User><Hangup/>"'
    assert sip.find("Hangup") is None
