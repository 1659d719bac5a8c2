"""The callbacks a call's progress sends, built as Twilio builds them: :class:`Progress`.

- **Status callbacks** to ``StatusCallback`` (``StatusCallbackMethod``, ``POST`` by default),
  one per subscribed ``StatusCallbackEvent`` (only ``completed`` when none is given):
  ``initiated`` (``CallStatus=initiated``), ``ringing``, ``answered`` (``in-progress``) and
  ``completed`` (the final status: ``completed``, ``busy``, ``no-answer``, ``failed`` or
  ``canceled``, with ``CallDuration``). Each has the call's fields
  (:func:`~actors.emulator.inbound.request_fields`, ``AnsweredBy`` once known),
  ``CallbackSource=call-progress-events``, ``SequenceNumber`` (from 0, per call) and
  ``Timestamp`` (RFC 2822). :meth:`Progress.event` and :meth:`Progress.status_changed` are
  called with the API's lock held, so the callbacks are queued in the order of the changes.
- **Machine detection** with ``AsyncAmd=true``: ``AsyncAmdStatusCallback`` gets ``CallSid``,
  ``AccountSid``, ``AnsweredBy`` and ``MachineDetectionDuration`` (ms).
- **Stream events** to ``<Stream statusCallback>``: ``StreamEvent`` ``stream-started`` /
  ``stream-stopped``, or ``stream-error`` (the stream could not be dialled; its
  ``StreamError`` says why), with ``StreamSid``, ``StreamName`` (the name, else the sid),
  ``Timestamp``.

All go through the :class:`~actors.emulator.callbacks.CallbackSender`, in order per call.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

from .callbacks import CallbackSender
from .inbound import request_fields
from .rest import EmulatedCall
from .twiml import StreamTarget

__all__ = ["Progress"]

_EVENT_OF = {"ringing": "ringing", "in-progress": "answered"}


def _timestamp() -> str:
    return email.utils.format_datetime(datetime.now(UTC))


class Progress:
    """Builds and queues a call's callbacks on ``sender``."""

    def __init__(self, sender: CallbackSender) -> None:
        self.sender = sender
        self._sequence: dict[str, int] = {}  # status callbacks queued per call (API lock held)

    def status_changed(self, call: EmulatedCall) -> None:
        """``call``'s status changed (the API's lock held): its callback, if subscribed."""
        if call.ended:
            self.event(call, "completed")
            self._sequence.pop(call.sid, None)
        elif call.status in _EVENT_OF:
            self.event(call, _EVENT_OF[call.status])

    def event(self, call: EmulatedCall, event: str) -> None:
        """Queue the status callback of ``event`` if the call subscribed to it (lock held)."""
        if call.status_callback is None:
            return
        if event not in (call.status_callback_events or ("completed",)):
            return
        sequence = self._sequence.get(call.sid, 0)
        self._sequence[call.sid] = sequence + 1
        fields = request_fields(call, "initiated" if event == "initiated" else call.status)
        fields.update(
            CallbackSource="call-progress-events",
            SequenceNumber=str(sequence),
            Timestamp=_timestamp(),
        )
        if call.ended:
            fields["CallDuration"] = str(call.duration_s)
        self.sender.notify(
            "status",
            call.sid,
            account_sid=call.account_sid,
            url=call.status_callback,
            params=fields,
            method=call.status_callback_method or "POST",
        )

    def amd(self, call: EmulatedCall, verdict: str | None, duration_ms: int) -> None:
        """Machine detection decided, in the background: tell ``AsyncAmdStatusCallback``."""
        if call.async_amd_callback is None:
            return
        fields = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "AnsweredBy": verdict or "unknown",
            "MachineDetectionDuration": str(duration_ms),
        }
        self.sender.notify(
            "amd",
            call.sid,
            account_sid=call.account_sid,
            url=call.async_amd_callback,
            params=fields,
            method=call.async_amd_callback_method,
        )

    def stream(
        self, call: EmulatedCall, stream: StreamTarget, stream_sid: str, event: str, error: str = ""
    ) -> None:
        """A ``<Stream>`` started, stopped or failed (``error``): tell its
        ``statusCallback``, if it has one."""
        if stream.status_callback is None:
            return
        fields = {
            "AccountSid": call.account_sid,
            "CallSid": call.sid,
            "StreamSid": stream_sid,
            "StreamName": stream.name or stream_sid,
            "StreamEvent": event,
            "Timestamp": _timestamp(),
        }
        if event == "stream-error":
            fields["StreamError"] = error
        self.sender.notify(
            "stream",
            call.sid,
            account_sid=call.account_sid,
            url=stream.status_callback,
            params=fields,
            method=stream.status_callback_method,
        )
