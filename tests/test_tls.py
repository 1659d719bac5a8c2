"""TLS verification stays on: a wss:// peer whose certificate we cannot verify is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from actors import ConnectionFailed, TransportService
from actors.gateway import ServerThread, echo
from tests.conftest import fast_config

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
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
