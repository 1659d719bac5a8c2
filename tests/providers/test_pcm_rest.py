"""The Vonage and Exotel REST pieces that need no server: builders, limits, error bodies."""

from __future__ import annotations

import pytest

from actors.config import VonageProviderConfig
from actors.errors import ConfigError
from actors.providers import exotel, vonage


def test_exotel_stream_urls_keep_to_exotels_limits() -> None:
    url = exotel.stream_url(
        "wss://media.example.com/",
        {"session": "s1", "token": "t"},
        sample_rate=16000,
        basic_auth=("exo", "p@ss:word"),
    )
    assert url == (
        "wss://exo:p%40ss%3Aword@media.example.com/exotel?sample-rate=16000&session=s1&token=t"
    )
    with pytest.raises(ValueError, match="at most 3 custom parameters"):
        exotel.stream_url("wss://m", {"a": "1", "b": "2", "c": "3", "d": "4"}, sample_rate=8000)
    with pytest.raises(ValueError, match="256 characters"):
        exotel.stream_url("wss://m", {"a": "x" * 300}, sample_rate=8000)


def test_error_bodies_become_provider_errors_and_unknown_ones_are_not_echoed() -> None:
    error = exotel.parse_error_response(
        401,
        b'{"RestException": {"Status": 401, "Message": "Authentication failed.", '
        b'"Code": "UNAUTHORIZED"}}',
    )
    assert (error.status, error.code, error.message) == (
        401,
        "UNAUTHORIZED",
        "Authentication failed.",
    )
    for parse in (exotel.parse_error_response, vonage.parse_error_response):
        unknown = parse(502, b"<html>secret-ish upstream page</html>", reason="Bad Gateway")
        assert "secret-ish" not in str(unknown) and unknown.status == 502
    problem = vonage.parse_error_response(
        400,
        b'{"type": "https://developer.nexmo.com/api-errors#validation", "title": "Bad Request",'
        b' "invalid_parameters": [{"name": "to", "reason": "missing"}]}',
    )
    assert problem.code == "validation" and "to" in problem.message


def test_vonage_numbers_and_nccos_are_checked_where_they_are_built() -> None:
    assert vonage.phone_number("+447700900001") == "447700900001"
    with pytest.raises(ValueError):
        vonage.phone_number("+44 7700")
    with pytest.raises(ValueError):
        vonage.websocket_ncco("https://not-a-websocket")
    with pytest.raises(ValueError):
        vonage.websocket_ncco("wss://m/vonage", rate=24000)  # the NCCO takes 8000 or 16000
    with pytest.raises(TypeError):
        vonage.websocket_ncco("wss://m/vonage", headers={"n": 1})  # type: ignore[dict-item]


def test_mu_law_is_8k_only_in_the_provider_configs() -> None:
    with pytest.raises(ConfigError, match="8000 Hz only"):
        VonageProviderConfig(name="v", audio_encoding="audio/x-mulaw", audio_sample_rate=16000)
    assert "private_key='" not in repr(VonageProviderConfig(name="v", private_key="PEM"))
