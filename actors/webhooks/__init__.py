"""The inbound side: webhooks that providers call when a call comes in, and the hand-off of
those calls to the application threads that accept them.

- :mod:`actors.webhooks.twilio`: sans-I/O. A Twilio webhook request (method, URL, headers,
  body) becomes a decision: a verified :class:`~actors.webhooks.twilio.InboundCall` or
  :class:`~actors.webhooks.twilio.StatusEvent`, or a :class:`~actors.webhooks.twilio.Refusal`
  with its HTTP status. Also the TwiML answers (``<Connect><Stream>``, ``<Reject>``).
- :mod:`actors.webhooks.inbound`: :class:`~actors.webhooks.inbound.InboundQueue`, the
  thread-safe meeting point of a webhook thread (``offer``) and an application thread
  (``accept``), with capacity, a queue timeout and idempotency per call id.
- :mod:`actors.webhooks.server`: :class:`~actors.webhooks.server.WebhookServer`, the HTTP
  server (stdlib, one thread per request, bounded) that serves ``/twilio/voice`` and
  ``/twilio/status`` with the two above.
"""
