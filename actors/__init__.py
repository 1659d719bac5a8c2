"""transport-actors: one pykka actor per live call session, supervised, behind a sync facade.

::

    from actors import TransportService, Binary, Text, Close

    with TransportService.from_yaml("config/transport.yaml") as service:
        info = service.create_session(provider="websocket", url="ws://127.0.0.1:8765/")
        service.write_websocket_message(info.session_id, Text("hello"))
        print(service.read_websocket_message(info.session_id, timeout=5.0))
        service.end_session(info.session_id)
"""

from .config import TransportConfig, default_config, load_config
from .errors import (
    AcceptTimeout,
    ClusterUnavailable,
    ConfigError,
    ConnectionFailed,
    Draining,
    ProviderError,
    QueueFull,
    ReadTimeout,
    ServiceClosed,
    SessionClosed,
    SessionNotFound,
    TransportError,
    UnsupportedMessage,
)
from .lifecycle import SessionState
from .messages import (
    Audio,
    Binary,
    CallStatus,
    Clear,
    Close,
    Dtmf,
    MachineDetected,
    Mark,
    MediaFormat,
    Message,
    SessionInfo,
    SessionRequest,
    SessionStatus,
    Started,
    Stopped,
    StreamError,
    Text,
)
from .service import TransportService

__version__ = "0.1.0"

__all__ = [
    "AcceptTimeout",
    "Audio",
    "Binary",
    "CallStatus",
    "Clear",
    "Close",
    "ClusterUnavailable",
    "ConfigError",
    "ConnectionFailed",
    "Draining",
    "Dtmf",
    "MachineDetected",
    "Mark",
    "MediaFormat",
    "Message",
    "ProviderError",
    "QueueFull",
    "ReadTimeout",
    "ServiceClosed",
    "SessionClosed",
    "SessionInfo",
    "SessionNotFound",
    "SessionRequest",
    "SessionState",
    "SessionStatus",
    "Started",
    "Stopped",
    "StreamError",
    "Text",
    "TransportConfig",
    "TransportError",
    "TransportService",
    "UnsupportedMessage",
    "default_config",
    "load_config",
]
