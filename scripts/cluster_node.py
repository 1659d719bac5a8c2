"""One runtime node of a cluster, as a process: accepts calls and echoes them, says what it does.

    python scripts/cluster_node.py -c node.yaml [--acceptors 4]

The config has a ``cluster`` section (and ``gateway.secret``, shared with the gateways). The
node runs a :class:`~actors.TransportService`; threads of it ``accept_session`` (inbound calls
claimed for this node, and calls taken over from a node that died: ``resumed``), and each
session is echoed (every ``Audio`` written back) by a thread of its own, which also saves a
small state blob (``save_state``) every 50 frames.

On stdout, one line per event (flushed: a reader sees each line as it is written, and a SIGKILL
loses nothing already printed), for tests and the demo:

- ``ready {"node": ..., "voice_url": ..., "listen": ...}`` once the node is registered
  (``listen``: where its webhook is; ``voice_url``: its public URL, a load balancer's);
- ``{"e": "session", "sid", "call", "dir", "resumed", "state", "t"}`` per session accepted or
  created (``t``: ``time.monotonic()``, comparable across processes on one Linux host);
- ``a <sid> <sequence> <t>`` per audio frame received (its ``Audio.sequence``: the
  provider's frame number, e.g. Twilio's ``sequenceNumber``);
- ``{"e": "end", "sid", "code", "reason", "frames"}`` when a session ends;
- ``{"e": "error", "op", "error"}``; ``{"e": "draining"}``; ``{"e": "status", ...}``.

On stdin, one command per line: ``call <to> [provider]`` (an outbound call; the provider
entry's name, ``twilio`` by default), ``end <sid>``, ``dtmf <sid> <digits>`` (``send_dtmf``:
says ``{"e": "dtmf", "sid"}`` once the call took the digits), ``drain``, ``status``, ``quit``.
SIGTERM drains (no new call) and exits once the calls in progress have ended (or at a second
SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from actors import Audio, Binary, Close, SessionInfo, TransportService
from actors.errors import AcceptTimeout, ServiceClosed, TransportError

_LOCK = threading.Lock()


def say(line: str) -> None:
    with _LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def event(name: str, **fields: Any) -> None:
    say(json.dumps({"e": name, **fields}, default=str))


class Node:
    def __init__(self, service: TransportService) -> None:
        self.service = service
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)
        thread.start()

    def accept_loop(self) -> None:
        while not self.stop.is_set():
            try:
                info = self.service.accept_session(timeout=0.5)
            except AcceptTimeout:
                continue
            except ServiceClosed:
                return
            except TransportError as exc:
                event("error", op="accept", error=str(exc))
                continue
            self.spawn(self.echo, info)

    def call(self, to: str, provider: str = "twilio") -> None:
        try:
            info = self.service.create_session(provider=provider, to=to)
        except TransportError as exc:
            event("error", op="call", error=f"{type(exc).__name__}: {exc}")
            return
        self.echo(info)

    def echo(self, info: SessionInfo) -> None:
        sid, service = info.session_id, self.service
        event(
            "session",
            sid=sid,
            call=info.call_id,
            dir=info.direction,
            resumed=info.resumed,
            state=(info.state or b"").decode(errors="replace"),
            provider=info.provider,
            t=time.monotonic(),
        )
        frames, code, reason = 0, None, ""
        try:
            while True:
                try:
                    message = service.read_websocket_message(sid, timeout=30.0)
                except TransportError:
                    break
                if message is None:
                    break
                if isinstance(message, Audio):
                    frames += 1
                    say(f"a {sid} {message.sequence} {time.monotonic():.6f}")
                    try:
                        service.write_websocket_message(sid, Binary(message.data))
                        if frames % 50 == 0:
                            service.save_state(sid, json.dumps({"frames": frames}).encode())
                    except TransportError:
                        pass
                elif isinstance(message, Close):
                    code, reason = message.code, message.reason
        finally:
            event("end", sid=sid, code=code, reason=reason, frames=frames)
            try:
                service.end_session(sid)
            except TransportError:
                pass

    def dtmf(self, sid: str, digits: str) -> None:
        try:
            self.service.send_dtmf(sid, digits)
        except TransportError as exc:
            event("error", op="dtmf", error=f"{type(exc).__name__}: {exc}")
            return
        event("dtmf", sid=sid, digits=digits, t=time.monotonic())

    def command(self, line: str) -> bool:
        words = line.split()
        if not words:
            return True
        if words[0] == "call" and len(words) in (2, 3):
            self.spawn(self.call, *words[1:])
        elif words[0] == "end" and len(words) == 2:
            try:
                self.service.end_session(words[1])
            except TransportError as exc:
                event("error", op="end", error=str(exc))
        elif words[0] == "dtmf" and len(words) == 3:
            self.spawn(self.dtmf, words[1], words[2])
        elif words[0] == "drain":
            self.service.drain(0)
            event("draining")
        elif words[0] == "status":
            event("status", **(self.service.cluster_status() or {}))
        elif words[0] == "quit":
            return False
        else:
            event("error", op="command", error=f"unknown command {line!r}")
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--acceptors", type=int, default=4)
    args = parser.parse_args()
    service = TransportService.from_yaml(args.config)
    node = Node(service)
    terms = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        if terms.is_set():
            node.stop.set()
        terms.set()

    signal.signal(signal.SIGTERM, on_term)
    try:
        status = service.cluster_status() or {}
        listen = service.infrastructure.webhook().url  # voice_url may be a load balancer's
        ready = {"node": status.get("node_id"), "voice_url": service.voice_url, "listen": listen}
        say("ready " + json.dumps(ready))
        for _ in range(args.acceptors):
            node.spawn(node.accept_loop)
        reader = threading.Thread(target=_read_commands, args=(node, terms), daemon=True)
        reader.start()
        terms.wait()
        if not node.stop.is_set():  # drain: no new call; the ones in progress finish
            service.drain(0)
            event("draining")
            while service.sessions() and not node.stop.wait(0.1):
                pass
        node.stop.set()
    finally:
        service.close()
        with node.lock:
            threads = list(node.threads)
        for thread in threads:
            thread.join(2.0)
    return 0


def _read_commands(node: Node, terms: threading.Event) -> None:
    for line in sys.stdin:
        if not node.command(line.strip()):
            break
    node.stop.set()
    terms.set()


if __name__ == "__main__":
    sys.exit(main())
