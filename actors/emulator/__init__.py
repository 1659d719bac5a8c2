"""A local, Twilio-compatible phone emulator for the demo, tests and development.

For now this holds the REST side (:class:`TwilioApiServer`): the Calls API a Twilio provider
talks to, with Twilio's validation and error bodies, fault injection and a record of calls.
"""

from .rest import (
    EmulatedCall,
    Operation,
    RecordedRequest,
    StreamTarget,
    TwilioApiServer,
    TwiMLError,
    parse_stream_target,
)

__all__ = [
    "EmulatedCall",
    "Operation",
    "RecordedRequest",
    "StreamTarget",
    "TwiMLError",
    "TwilioApiServer",
    "parse_stream_target",
]
