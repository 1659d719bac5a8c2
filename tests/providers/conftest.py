"""Fixtures the REST client tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests


@pytest.fixture
def raw() -> Iterator[requests.Session]:
    """A plain session for requests the client would never make."""
    with requests.Session() as session:
        yield session
