"""The telephony side of a cluster test, one per provider: its emulator (in the test's process,
shared by every node, as the provider is), the ``providers:`` entry that points a node at it,
and what the test asks of a call (is it still up, how did it end).

Twilio's emulator always runs (the nodes' inbound config has its account); for another
provider, :func:`telephony` gives the emulator that the cluster's nodes dial, and
``call <to> <provider>`` on a node places a call through it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from actors.config import EmulatorConfig
from actors.emulator.exotel import ExotelEmulator
from actors.emulator.plivo import PlivoEmulator
from actors.emulator.telnyx import TelnyxEmulator
from actors.emulator.vonage import VonageEmulator

__all__ = ["PROVIDERS", "Telephony", "entry_yaml", "heard", "telephony"]

#: The providers whose calls go through the gateway, besides Twilio (tests/cluster/nodes.py).
PROVIDERS = ("telnyx", "plivo", "vonage", "exotel")
FROM = "+15550199"


class Telephony(Protocol):
    name: str

    def start(self) -> Any: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def entry(self) -> dict[str, object]:
        """The node's ``providers.<name>`` entry (credentials of the emulator's own)."""
        ...

    def up(self, call_id: str) -> bool:
        """Whether the call is still in progress at the provider."""
        ...

    def call(self, call_id: str) -> Any: ...

    def streams_to(self, call_id: str) -> str:
        """The URL the call's (last) stream was dialled to."""
        ...

    def dial_in(self, webhook: str, to: str, from_: str) -> str:
        """An inbound call to the runtime's webhook at ``webhook`` (a balancer's URL, up to
        the path), as the provider places one; its id."""
        ...


def heard(found: Telephony, call_id: str) -> int:
    """Bytes of audio the call's phone has played (what the application sent it)."""
    media = found.call(call_id).media
    return 0 if media is None else len(media.recording)


class _Telnyx(TelnyxEmulator):
    name = "telnyx"

    def entry(self) -> dict[str, object]:
        return {
            "type": "telnyx",
            "api_base_url": self.url,
            "api_key": self.api_key,
            "connection_id": self.connection_id,
            "from_number": FROM,
            "public_key": self.public_key,
        }

    def streams_to(self, call_id: str) -> str:
        return str(self.call(call_id).stream_url)

    def dial_in(self, webhook: str, to: str, from_: str) -> str:
        return self.place_inbound_call(webhook + "/telnyx/voice", to, from_).call_control_id

    def up(self, call_id: str) -> bool:
        return not self.call(call_id).ended.is_set()


class _Plivo(PlivoEmulator):
    name = "plivo"

    def entry(self) -> dict[str, object]:
        return {
            "type": "plivo",
            "api_base_url": self.url,
            "auth_id": self.auth_id,
            "auth_token": self.auth_token,
            "from_number": FROM,
        }

    def streams_to(self, call_id: str) -> str:
        return str(self.call(call_id).stream_url)

    def dial_in(self, webhook: str, to: str, from_: str) -> str:
        return self.place_inbound_call(webhook + "/plivo/answer", to, from_).request_uuid

    def up(self, call_id: str) -> bool:
        call = self.call(call_id)
        return call.alive and not call.outcome


class _Vonage(VonageEmulator):
    name = "vonage"

    def entry(self) -> dict[str, object]:
        return {
            "type": "vonage",
            "api_base_url": self.url,
            "application_id": self.application_id,
            "private_key": self.private_key,
            "signature_secret": self.signature_secret,
            "from_number": FROM,
        }

    def streams_to(self, call_id: str) -> str:
        return str(self.call(call_id).uri)

    def dial_in(self, webhook: str, to: str, from_: str) -> str:
        return self.place_inbound_call(webhook + "/vonage/answer", to, from_).uuid

    def up(self, call_id: str) -> bool:
        return not self.call(call_id).ended.is_set()


class _Exotel(ExotelEmulator):
    name = "exotel"

    def entry(self) -> dict[str, object]:
        return {
            "type": "exotel",
            "api_base_url": self.url,
            "account_sid": self.account_sid,
            "api_key": self.api_key,
            "api_token": self.api_token,
            "caller_id": FROM,
        }

    def streams_to(self, call_id: str) -> str:
        return str(self.call(call_id).stream_url)

    def dial_in(self, webhook: str, to: str, from_: str) -> str:
        raise NotImplementedError("the runtime answers no Exotel call (README, Exotel)")

    def up(self, call_id: str) -> bool:
        return not self.call(call_id).ended.is_set()


def telephony(name: str) -> Telephony:
    """The emulator of provider ``name`` (not started), playing a tone on every call."""
    config = EmulatorConfig(media="tone")
    kinds: dict[str, Any] = {
        "telnyx": _Telnyx,
        "plivo": _Plivo,
        "vonage": _Vonage,
        "exotel": _Exotel,
    }
    found: Telephony = kinds[name](config)
    return found


def entry_yaml(found: Telephony) -> str:
    """The provider's entry as one YAML flow mapping (JSON is YAML)."""
    return json.dumps(found.entry())
