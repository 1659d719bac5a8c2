"""Fixtures more than one suite asks for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors import TransportService
from tests._provider_calls import MACHINE, PERSON, config


@pytest.fixture
def amd_service() -> Iterator[TransportService]:
    """A service whose emulated phones at ``MACHINE`` and ``PERSON`` answer as a machine and
    as a person."""
    with TransportService(config(behaviours={MACHINE: "machine", PERSON: "human"})) as svc:
        yield svc
