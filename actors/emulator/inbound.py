"""Inbound calls placed by the emulator, and the fields Twilio sends about any call.

An inbound call is an :class:`~actors.emulator.rest.EmulatedCall` with ``direction`` ``inbound``,
``status`` ``ringing`` and ``url`` the voice URL to ask (``emulator.voice_url`` unless given).
It is kept by the API like a created call, so that the REST update (redirect, transfer, DTMF)
and hang-up work on it as on Twilio. :mod:`actors.emulator.calls` then requests its voice URL
and obeys the answer.

:func:`request_fields` are the parameters of every request Twilio makes about a call (voice
URL, ``<Redirect>``, status callbacks), after https://www.twilio.com/docs/usage/webhooks/voice-webhooks:
``CallSid``, ``AccountSid``, ``From``, ``To``, ``CallStatus``, ``ApiVersion``, ``Direction``,
``ForwardedFrom``, ``CallerName``, ``Called``, ``Caller`` (and ``AnsweredBy`` once machine
detection has decided).
"""

from __future__ import annotations

import secrets

from .rest import API_VERSION, EmulatedCall, _now

__all__ = ["inbound_call", "request_fields"]


def inbound_call(
    account_sid: str,
    to: str,
    from_: str,
    voice_url: str,
    *,
    method: str = "POST",
    caller_name: str | None = None,
    forwarded_from: str | None = None,
    status_callback: str | None = None,
    status_callback_events: tuple[str, ...] = (),
    status_callback_method: str | None = None,
) -> EmulatedCall:
    """A new inbound call from ``from_`` to ``to`` (a number of ``account_sid``), ringing."""
    return EmulatedCall(
        sid="CA" + secrets.token_hex(16),
        account_sid=account_sid,
        to=to,
        from_=from_,
        twiml=None,
        url=voice_url,
        status="ringing",
        status_callback=status_callback,
        status_callback_events=status_callback_events,
        created_at=_now(),
        status_callback_method=status_callback_method,
        direction="inbound",
        method=method,
        caller_name=caller_name,
        forwarded_from=forwarded_from,
    )


def request_fields(call: EmulatedCall, status: str | None = None) -> dict[str, str]:
    """What Twilio sends about ``call`` in every webhook, with ``CallStatus`` ``status``
    (default: the call's)."""
    fields = {
        "AccountSid": call.account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call.sid,
        "CallStatus": status or call.status,
        "Called": call.to,
        "Caller": call.from_,
        "Direction": call.direction,
        "From": call.from_,
        "To": call.to,
    }
    if call.direction == "inbound":
        fields["CallerName"] = call.caller_name or ""
        fields["ForwardedFrom"] = call.forwarded_from or ""
    if call.answered_by is not None:
        fields["AnsweredBy"] = call.answered_by
    return fields
