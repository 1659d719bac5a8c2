"""The ``metrics`` section: where Prometheus metrics are served, if anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._fields import _optional_host_port

__all__ = [
    "MetricsConfig",
]


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics: ``listen`` set serves ``/metrics`` there (the runtime and the
    embedded gateway); null serves nothing (``TransportService.metrics()`` works either way)."""

    listen: str | None = field(default=None, metadata={"check": _optional_host_port})
