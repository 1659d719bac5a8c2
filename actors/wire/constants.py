"""Protocol constants shared by both ends of our wires: the runtime and the media gateway.

Pure data, importing nothing of ours: close codes (RFC 6455 section 7.4, and the gateway's own),
the headers of the gateway's resume handshake, the gateway's session path, and the shapes of
Twilio's identifiers. Each is defined here once; the modules that speak these protocols import
them from here rather than spelling them again.
"""

from __future__ import annotations

import enum
import re

__all__ = [
    "ACCOUNT_SID",
    "CALL_SID",
    "EPOCH_HEADER",
    "RECEIVED_HEADER",
    "RESTREAM_HEADER",
    "RESUME_FROM_HEADER",
    "SENT_HEADER",
    "SESSIONS_PATH",
    "STREAM_ENDED",
    "CloseCode",
    "is_sendable",
]


class CloseCode(enum.IntEnum):
    """WebSocket close codes: RFC 6455 section 7.4.1, the IANA registry, and ours (4xxx).

    An ``IntEnum``, so a member compares equal to the bare number a peer sends
    (``CloseCode.NORMAL_CLOSURE == 1000``) and packs as one. Three codes are never sent:
    :data:`NO_STATUS`, :data:`ABNORMAL` and :data:`TLS_HANDSHAKE` only *report* a close
    (see :func:`is_sendable`).
    """

    NORMAL_CLOSURE = 1000  # the purpose of the connection is fulfilled
    GOING_AWAY = 1001  # a server going down, a browser leaving the page
    PROTOCOL_ERROR = 1002  # the peer broke RFC 6455
    UNSUPPORTED_DATA = 1003  # a data type the endpoint cannot accept (text vs binary)
    NO_STATUS = 1005  # reported, never sent: the close frame carried no code
    ABNORMAL = 1006  # reported, never sent: the connection ended without a close frame
    INVALID_PAYLOAD = 1007  # data inconsistent with its type: invalid UTF-8 in a text message
    POLICY_VIOLATION = 1008  # a generic refusal (the gateway: a bad token, no provider in time)
    MESSAGE_TOO_BIG = 1009  # a message larger than the endpoint accepts
    MANDATORY_EXTENSION = 1010  # (client) the server did not negotiate a required extension
    INTERNAL_ERROR = 1011  # the endpoint met an unexpected condition
    SERVICE_RESTART = 1012  # the server is restarting (IANA registry)
    TRY_AGAIN_LATER = 1013  # the server is overloaded (IANA registry)
    BAD_GATEWAY = 1014  # a gateway got a bad answer upstream (IANA registry)
    TLS_HANDSHAKE = 1015  # reported, never sent: the TLS handshake failed
    #: The gateway has no record of the call a session tries to resume (it restarted, or
    #: forgot the call long ago): the call cannot be resumed, so redialling would not help.
    CALL_UNKNOWN = 4404
    #: A hop of the same session that names a newer lease epoch holds the call (another
    #: runtime node took the session over): this connection's node has lost it for good.
    SESSION_FENCED = 4409


# RFC 6455 7.4.1-7.4.2 and the IANA registry: the codes an endpoint may put in a close frame.
# 1004 is reserved, 1005/1006/1015 only report; 0-999 and 1016-2999 are not used at all;
# 3000-3999 are registered with IANA, 4000-4999 private (ours).
_SENDABLE_BELOW_3000 = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def is_sendable(code: int) -> bool:
    """Whether ``code`` may be carried by a close frame (RFC 6455 section 7.4).

    True for 1000-1003, 1007-1014 and 3000-4999; a close frame received with any other code
    is a protocol error (1002), and none of them may be sent.
    """
    return code in _SENDABLE_BELOW_3000 or 3000 <= code <= 4999


#: Handshake headers of the gateway's resume protocol (see actors.gateway.server). A session
#: hop says how many frames of the session it has received; the gateway's answer says how many
#: it has received of the session's. HTTP header names are case-insensitive: websocket-client
#: hands response headers back with lowercased names, so look ``RECEIVED_HEADER.lower()`` up.
RESUME_FROM_HEADER = "X-Resume-From"
RECEIVED_HEADER = "X-Gateway-Received"
#: Optional on a session hop's handshake, for a cluster's sessions: the session's lease epoch
#: (the gateway admits only the newest connector of a call: see actors.gateway.pairing), and
#: how many frames the session has sent (so that a gateway a call was redirected to, after
#: another died, neither asks for them again nor numbers later ones from 0).
EPOCH_HEADER = "X-Session-Epoch"
SENT_HEADER = "X-Session-Sent"
#: Optional on a session hop's handshake: the session expects its call to stream again
#: within this many milliseconds (a call update, e.g. DTMF, ended the stream). The gateway
#: then re-opens the call if it has ended, and waits that long for the new provider stream.
RESTREAM_HEADER = "X-Restream-Within"

#: The reason of the gateway's 1000 that closes a session hop once the provider stream ended
#: and the hop had all of it (a session expecting a re-stream redials on it).
STREAM_ENDED = "call ended"

#: Sessions dial the gateway at ``{gateway url}{SESSIONS_PATH}/{session id}``.
SESSIONS_PATH = "/sessions"

#: A Twilio Account SID: ``AC`` and 32 hex digits (match with ``fullmatch``).
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
#: A Twilio Call SID: ``CA`` and 32 hex digits (match with ``fullmatch``).
CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
