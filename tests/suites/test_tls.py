"""TLS: verification stays on (a wss:// peer whose certificate we cannot verify is refused),
and a verified wss:// session carries frames both ways through the I/O loop's non-blocking
TLS reads and writes, large ones included."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from actors import Binary, ConnectionFailed, Text, TransportService
from actors.gateway import ServerThread, echo
from tests.conftest import fast_config

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate (its PEM is tmp_path/cert.pem)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a self-signed certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_unverifiable_certificate_is_refused(self_signed: ssl.SSLContext) -> None:
    with ServerThread(echo, ssl=self_signed) as server, TransportService(fast_config()) as svc:
        url = f"wss://127.0.0.1:{server.port}/"
        with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED") as caught:
            svc.create_session(url=url)
        assert url in str(caught.value)
        assert svc.sessions() == []


def test_a_trusted_wss_peer_carries_frames_both_ways(
    self_signed: ssl.SSLContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trust this one certificate, the way a deployment trusts its own CA: verification stays on.
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(tmp_path / "cert.pem"))
    with ServerThread(echo, ssl=self_signed) as server, TransportService(fast_config()) as svc:
        sid = svc.create_session(url=f"wss://127.0.0.1:{server.port}/").session_id
        # Small frames, and frames larger than a TLS record (16 KiB) and than one read (64 KiB),
        # so that partial writes and records already decrypted but unread are exercised.
        sent = [Binary(bytes([i]) * size) for i, size in enumerate((1, 160, 20_000, 200_000))]
        sent += [Text("é" * 30_000), Binary(b"last")]
        for message in sent:
            svc.write_websocket_message(sid, message)
        got = [svc.read_websocket_message(sid, timeout=10) for _ in sent]
        assert got == sent
        status = svc.status(sid)
        assert (status.frames_out, status.frames_in, status.restarts) == (6, 6, 0)
        svc.end_session(sid)
