"""The whole file: :class:`TransportConfig` holds one object per section."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from ..checks import short_repr
from ..errors import ConfigError
from ._fields import _CODE_ONLY
from ._redacted import _plain
from .cluster import ClusterConfig
from .emulator import EmulatorConfig
from .gateway import GatewayConfig
from .inbound import InboundConfig
from .metrics import MetricsConfig
from .providers import ProviderConfig, TwilioProviderConfig, _default_providers
from .runtime import RuntimeConfig, SupervisorConfig

__all__ = [
    "TransportConfig",
    "default_config",
]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """A whole deployment: runtime limits, supervisor policy, providers by name."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=_default_providers)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    emulator: EmulatorConfig = field(default_factory=EmulatorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    cluster: ClusterConfig | None = None  # None: one process, no Redis
    inbound: InboundConfig = field(default_factory=InboundConfig)
    source: str | None = field(default=None, compare=False, metadata=_CODE_ONLY)
    # key path -> the text as written, for every value expanded from the environment
    templates: Mapping[str, str] = field(
        default_factory=dict, compare=False, repr=False, metadata=_CODE_ONLY
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", MappingProxyType(dict(self.providers)))
        object.__setattr__(self, "templates", MappingProxyType(dict(self.templates)))
        # The gateway learns from the Twilio providers of the same file: their auth tokens
        # (to validate X-Twilio-Signature) and how long their calls may ring.
        twilio = [p for p in self.providers.values() if isinstance(p, TwilioProviderConfig)]
        tokens = tuple(dict.fromkeys(p.auth_token for p in twilio if p.auth_token))
        ring = float(max((p.ring_timeout_s for p in twilio), default=0))
        gateway = replace(self.gateway, inherited_auth_tokens=tokens, longest_ring_s=ring)
        object.__setattr__(self, "gateway", gateway)

    def provider(self, name: str) -> ProviderConfig:
        """The provider called ``name``; :class:`ConfigError` if there is none."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(self.providers) or "(none)"
            why = f"unknown provider {short_repr(name)}; configured providers: {known}"
            close = difflib.get_close_matches(name, list(self.providers), n=1)
            if close:
                why += f"; did you mean {close[0]!r}?"
            raise ConfigError(why, file=self.source, key_path=f"providers.{name}") from None

    def check_cluster_node(self) -> None:
        """Refuse (:class:`ConfigError`) a config that cannot run a runtime node of its cluster.

        The cluster places up to ``cluster.capacity`` calls on a node (inbound claims and
        takeovers), and each reaches ``accept_session`` through the node's inbound queue, which
        answers busy past ``inbound.max_sessions``: the queue must hold the whole capacity.
        Not checked for a gateway, which reads the same sections but has no inbound queue.
        """
        cluster, inbound = self.cluster, self.inbound
        if cluster is None or not inbound.enabled or inbound.max_sessions >= cluster.capacity:
            return
        why = (
            f"inbound.max_sessions ({inbound.max_sessions}) must be at least cluster.capacity "
            f"({cluster.capacity}): the cluster places up to cluster.capacity calls on this "
            "node, and its inbound queue would answer the rest busy; raise "
            "inbound.max_sessions or lower cluster.capacity"
        )
        raise ConfigError(why, file=self.source, key_path="inbound.max_sessions")

    def redacted(self) -> dict[str, Any]:
        """The config as plain nested dicts (the YAML shape) with every secret as ``"***"``."""
        result: dict[str, Any] = _plain(self, "", "", self.templates)
        return result


def default_config() -> TransportConfig:
    """The embedded default; ``config/transport.yaml`` spells out the same values."""
    return TransportConfig()
