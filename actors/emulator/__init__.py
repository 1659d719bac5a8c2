"""Local emulators of the providers' APIs, for the demo, tests and development.

The Twilio side (:class:`TwilioApiServer`): the Calls API a Twilio provider talks to, with
Twilio's validation and error bodies, fault injection and a record of calls. The Daily side
(:class:`DailyApiServer`): rooms, meeting tokens and dial-out over Daily's REST API, with
Daily's error bodies and fault injection. Both stand on one HTTP server, request handler and
fault queue (``_http.py``), each with its own routes and error bodies; their request record is
one ``RecordedRequest`` (also named ``DailyRecordedRequest`` here, as it was when each module
had its own).
"""

from .daily import (
    DailyApiServer,
    DailyOperation,
    DialOutSession,
    EmulatedRoom,
)
from .daily import (
    RecordedRequest as DailyRecordedRequest,
)
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
    "DailyApiServer",
    "DailyOperation",
    "DailyRecordedRequest",
    "DialOutSession",
    "EmulatedCall",
    "EmulatedRoom",
    "Operation",
    "RecordedRequest",
    "StreamTarget",
    "TwiMLError",
    "TwilioApiServer",
    "parse_stream_target",
]
