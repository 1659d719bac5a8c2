"""What the providers whose audio comes through the media gateway share: the parameters that
route a call's stream to its session (with the session's stream token, or a credential of
their own), the dial options of the session's hop, and the application's audio format from
its config."""

from __future__ import annotations

from collections.abc import Mapping

from ..codecs.pcm import AudioFormat, AudioPolicy
from ..config import RuntimeConfig
from ..connection import DialOptions
from ..signing import hop_token, stream_nonce, stream_token
from ..wire.constants import SESSIONS_PATH
from . import GatewayEndpoint

__all__ = ["audio_policy", "call_parameters", "hop_dial", "nonced_parameters"]


def call_parameters(
    gateway: GatewayEndpoint, session_id: str, own: Mapping[str, str] | None
) -> dict[str, str]:
    """The parameters a call's stream carries to the gateway: the application's own (they
    come back in ``Started.parameters``), then ours, which win: the session and its **stream
    token** (it pairs one provider stream, once; it never opens the session's hop)."""
    token = stream_token(gateway.secret, session_id)
    return {**dict(own or {}), "session": session_id, "token": token}


def nonced_parameters(
    gateway: GatewayEndpoint, session_id: str, own: Mapping[str, str] | None = None
) -> dict[str, str]:
    """As :func:`call_parameters`, with a stream credential of its own: a fresh ``nonce``
    and the stream token that covers it (:mod:`actors.signing`; a call streamed again
    carries one, since the gateway pairs each credential once)."""
    nonce = stream_nonce()
    token = stream_token(gateway.secret, session_id, nonce)
    return {**dict(own or {}), "session": session_id, "token": token, "nonce": nonce}


def hop_dial(gateway: GatewayEndpoint, session_id: str, runtime: RuntimeConfig) -> DialOptions:
    """How the session's connector dials the gateway: ``/sessions/{id}`` with its hop token."""
    return DialOptions(
        url=f"{gateway.url.rstrip('/')}{SESSIONS_PATH}/{session_id}",
        headers={"Authorization": f"Bearer {hop_token(gateway.secret, session_id)}"},
        connect_timeout_s=runtime.connect_timeout_s,
        max_message_bytes=runtime.max_message_bytes,
        ping_interval_s=runtime.ping_interval_s,
        ping_timeout_s=runtime.ping_timeout_s,
        close_timeout_s=runtime.shutdown_timeout_s,
        resume_frames=gateway.resume_frames,
    )


def audio_policy(encoding: str, sample_rate: int) -> AudioPolicy:
    """The application's audio format: ``provider`` (the wire's own, nothing converted), or
    ``encoding`` at ``sample_rate`` (converted both ways by the codec)."""
    if encoding == "provider":
        return AudioPolicy()
    return AudioPolicy(AudioFormat(encoding, sample_rate))
