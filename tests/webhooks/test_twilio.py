"""Twilio's webhook rules, pure: the signature as Twilio computes it (form, repeated names,
bodySHA256, ports), the decisions on a request, and the TwiML answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest

from actors.signing import twilio_signature
from actors.webhooks.twilio import (
    InboundCall,
    Refusal,
    StatusEvent,
    body_sha256,
    connect_twiml,
    decide_status,
    decide_voice,
    precheck,
    reject_twiml,
    signed_url_variants,
    validate_twiml,
    verify_request,
)

ACCOUNT = "AC" + "a" * 32
TOKEN = "test-auth-token"
URL = "https://voice.example.com/twilio/voice"
CALL_SID = "CA" + "0123456789abcdef" * 2


def _hmac(token: str, data: str) -> str:
    """Twilio's signature of an already assembled string, computed here independently."""
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def voice_fields(**over: str) -> dict[str, str]:
    fields = {
        "CallSid": CALL_SID,
        "AccountSid": ACCOUNT,
        "From": "+15550100",
        "To": "+15550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "CallerName": "",  # empty values are sent, and signed, too
        "ForwardedFrom": "+15550142",
        "ApiVersion": "2010-04-01",
    }
    fields.update(over)
    return fields


def signed(fields: dict[str, str], url: str = URL, token: str = TOKEN) -> dict[str, str]:
    return {
        "X-Twilio-Signature": twilio_signature(token, url, fields),
        "Content-Type": "application/x-www-form-urlencoded",
        "Content-Length": "1",
    }


# -- the signature ---------------------------------------------------------------------------


def test_twilios_documented_example_verifies() -> None:
    # The worked example of Twilio's security page (token 12345, quoted by its helper
    # libraries' docs): the URL with its query, the POST fields, the published signature.
    pairs = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert verify_request("12345", url, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", pairs=pairs)
    assert not verify_request("12346", url, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", pairs=pairs)
    assert not verify_request(
        "12345", url, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", pairs=[*pairs[:-1], ("To", "+1800")]
    )


def test_parameters_are_sorted_by_name_and_each_value_of_a_repeated_name_is_signed() -> None:
    pairs = [("To", "+2"), ("Media", "b"), ("AccountSid", ACCOUNT), ("Media", "a")]
    data = URL + "AccountSid" + ACCOUNT + "Media" + "a" + "Media" + "b" + "To" + "+2"
    assert verify_request(TOKEN, URL, _hmac(TOKEN, data), pairs=pairs)
    # Signing only one value of the repeated name is not Twilio's signature.
    one = URL + "AccountSid" + ACCOUNT + "Media" + "a" + "To" + "+2"
    assert not verify_request(TOKEN, URL, _hmac(TOKEN, one), pairs=pairs)


@pytest.mark.parametrize(
    ("requested", "signed_as"),
    [
        ("https://h.example/v", "https://h.example:443/v"),
        ("https://h.example:443/v", "https://h.example/v"),
        ("http://h.example/v?x=1", "http://h.example:80/v?x=1"),
        ("https://h.example:8443/v", "https://h.example:8443/v"),
        ("https://h.example:8443/v", "https://h.example/v"),  # as the helper libraries allow
        ("https://user:pw@h.example/v", "https://h.example/v"),  # credentials are never signed
        ("https://[::1]:8443/v", "https://[::1]/v"),
    ],
)
def test_the_port_may_be_signed_or_not(requested: str, signed_as: str) -> None:
    fields = {"AccountSid": ACCOUNT, "CallSid": CALL_SID}
    signature = twilio_signature(TOKEN, signed_as, fields)
    assert verify_request(TOKEN, requested, signature, pairs=list(fields.items()))


def test_other_urls_do_not_verify() -> None:
    fields = {"AccountSid": ACCOUNT}
    signature = twilio_signature(TOKEN, "https://h.example:8443/v", fields)
    for url in ("https://h.example:8444/v", "https://h.example/w", "https://other.example/v"):
        assert not verify_request(TOKEN, url, signature, pairs=list(fields.items()))
    assert signed_url_variants("https://h.example/v?p=1") == (
        "https://h.example/v?p=1",
        "https://h.example:443/v?p=1",
    )


def test_a_json_body_is_verified_by_its_bodysha256() -> None:
    body = json.dumps({"AccountSid": ACCOUNT, "CallSid": CALL_SID, "CallStatus": "completed"})
    raw = body.encode()
    url = f"https://h.example/twilio/status?bodySHA256={body_sha256(raw)}"
    assert body_sha256(raw) == hashlib.sha256(raw).hexdigest()
    signature = _hmac(TOKEN, url)  # the URL alone: the hash stands for the body
    assert verify_request(TOKEN, url, signature, body=raw)
    assert not verify_request(TOKEN, url, signature, body=raw.replace(b"completed", b"failed"))
    forged = f"https://h.example/twilio/status?bodySHA256={'0' * 64}"
    assert not verify_request(TOKEN, forged, _hmac(TOKEN, forged), body=raw)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/json"}
    event = decide_status(url, headers, raw, {ACCOUNT: TOKEN})
    assert isinstance(event, StatusEvent) and event.status == "completed"


# -- the decisions ---------------------------------------------------------------------------


def test_a_signed_voice_webhook_becomes_an_inbound_call() -> None:
    fields = voice_fields()
    body = urlencode(fields).encode()
    call = decide_voice(URL, signed(fields), body, {ACCOUNT: TOKEN})
    assert call == InboundCall(
        direction="inbound",
        from_="+15550100",
        to="+15550199",
        call_id=CALL_SID,
        account_sid=ACCOUNT,
        fields=fields,
    )
    assert call.fields["CallerName"] == "" and call.call_status == "ringing"
    with pytest.raises(TypeError):
        call.fields["From"] = "+1"  # type: ignore[index]


def _refusal(decision: object) -> tuple[int, str]:
    assert isinstance(decision, Refusal), decision
    return decision.status, decision.reason


def test_bad_requests_are_refused_with_the_right_status() -> None:
    accounts = {ACCOUNT: TOKEN}
    fields = voice_fields()
    body = urlencode(fields).encode()
    headers = signed(fields)
    wrong = {**headers, "X-Twilio-Signature": twilio_signature("other", URL, fields)}
    assert _refusal(decide_voice(URL, wrong, body, accounts)) == (403, "bad_signature")
    assert _refusal(decide_voice(URL + "?x=1", headers, body, accounts)) == (403, "bad_signature")
    tampered = body.replace(b"%2B15550100", b"%2B15550666")
    assert _refusal(decide_voice(URL, headers, tampered, accounts)) == (403, "bad_signature")
    other = voice_fields(AccountSid="AC" + "b" * 32)
    other_body = urlencode(other).encode()
    assert _refusal(decide_voice(URL, signed(other), other_body, accounts)) == (
        403,
        "unknown_account",
    )
    no_from = {k: v for k, v in fields.items() if k != "From"}
    no_from_body = urlencode(no_from).encode()
    assert _refusal(decide_voice(URL, signed(no_from), no_from_body, accounts)) == (
        400,
        "bad_request",
    )
    bad_sid = voice_fields(CallSid="CA-not-a-sid")
    bad_sid_body = urlencode(bad_sid).encode()
    assert _refusal(decide_voice(URL, signed(bad_sid), bad_sid_body, accounts))[0] == 400
    assert _refusal(decide_voice(URL, headers, b"\xff\xfe", accounts)) == (400, "bad_request")
    xml_type = {**headers, "Content-Type": "text/xml"}
    assert _refusal(decide_voice(URL, xml_type, body, accounts)) == (400, "bad_request")


def test_precheck_refuses_before_the_body_is_read() -> None:
    ok = {"Content-Length": "100", "x-twilio-signature": "s"}
    assert precheck("POST", ok) is None
    assert _refusal(precheck("GET", ok)) == (405, "bad_method")
    assert _refusal(precheck("POST", {"x-twilio-signature": "s"})) == (411, "bad_request")
    assert _refusal(precheck("POST", {**ok, "Content-Length": "65537"})) == (413, "too_large")
    assert _refusal(precheck("POST", {"Content-Length": "100"})) == (403, "bad_signature")
    chunked = {**ok, "Transfer-Encoding": "chunked"}
    assert _refusal(precheck("POST", chunked)) == (411, "bad_request")


def test_our_redirect_marker_is_read_from_the_signed_url() -> None:
    fields = voice_fields(CallStatus="in-progress")
    url = URL + "?reattach=S-1"
    call = decide_voice(url, signed(fields, url), urlencode(fields).encode(), {ACCOUNT: TOKEN})
    assert isinstance(call, InboundCall) and call.reattach == "S-1"


# -- TwiML -----------------------------------------------------------------------------------


def test_connect_twiml_streams_carries_parameters_and_redirects_after() -> None:
    hostile = "a\"b<c>&d]]>\n'e"
    twiml = connect_twiml(
        "wss://gw.example/twilio",
        {"session": "S-1", "note": hostile},
        redirect_url=URL + "?reattach=S-1&x=<y>",
    )
    root = ET.fromstring(twiml)
    assert [child.tag for child in root] == ["Connect", "Redirect"]
    stream = root.find("Connect/Stream")
    assert stream is not None and stream.get("url") == "wss://gw.example/twilio"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert params == {"session": "S-1", "note": hostile}
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == URL + "?reattach=S-1&x=<y>"
    assert redirect.get("method") == "POST"
    with pytest.raises(ValueError):
        connect_twiml("wss://gw.example/twilio", {"session": "S\x00"})


def test_reject_twiml_and_configured_twiml() -> None:
    assert reject_twiml() == '<Response><Reject reason="busy" /></Response>'
    assert reject_twiml("rejected") == '<Response><Reject reason="rejected" /></Response>'
    with pytest.raises(ValueError):
        reject_twiml("later")
    assert validate_twiml("<Response><Say>Busy</Say></Response>")
    for bad in ("<Response>", "<Reject/>", '<!DOCTYPE x [<!ENTITY a "b">]><Response/>'):
        with pytest.raises(ValueError):
            validate_twiml(bad)
