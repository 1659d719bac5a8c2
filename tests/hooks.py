"""A webhook receiver for the emulator's tests: it answers TwiML per path, records every
request, and checks each one's ``X-Twilio-Signature`` with :mod:`actors.webhooks.twilio`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from actors.webhooks.twilio import verify_request


@dataclass(frozen=True)
class Hit:
    method: str
    path: str  # with its query
    fields: dict[str, str]  # the form (POST) or the query (GET)
    signed: bool  # the signature is Twilio's under the token


class Recorder:
    """Serves ``answers`` (path -> TwiML; a callable gets the hit; missing: ``<Response/>``)
    on loopback; ``delay`` (path -> seconds) holds an answer back."""

    def __init__(
        self,
        token: str,
        answers: Mapping[str, str | Callable[[Hit], str]] | None = None,
        delay: Mapping[str, float] | None = None,
    ) -> None:
        self.token = token
        self.answers = dict(answers or {})
        self.delay = dict(delay or {})
        self.hits: list[Hit] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                recorder._serve(self)

            do_POST = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = False  # server_close() joins the request threads
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        parts = urlsplit(request.path)
        pairs = parse_qsl(body.decode() if request.command == "POST" else parts.query, True)
        signature = request.headers.get("X-Twilio-Signature")
        url = self.url + request.path
        signed = verify_request(self.token, url, signature, pairs=pairs if body else ())
        hit = Hit(request.command, request.path, dict(pairs), signed)
        with self._changed:
            self.hits.append(hit)
            self._changed.notify_all()
        self._stopping.wait(self.delay.get(parts.path, 0.0))
        answer = self.answers.get(parts.path, "<Response/>")
        data = (answer(hit) if callable(answer) else answer).encode()
        request.send_response(200)
        request.send_header("Content-Type", "text/xml")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def wait_for(self, predicate: Callable[[list[Hit]], bool], timeout: float = 5.0) -> list[Hit]:
        """The hits once ``predicate(hits)`` holds (``AssertionError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.hits):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; hits so far: {self.hits}"
                self._changed.wait(left)
            return list(self.hits)

    def at(self, path: str) -> list[Hit]:
        with self._changed:
            return [hit for hit in self.hits if urlsplit(hit.path).path == path]
