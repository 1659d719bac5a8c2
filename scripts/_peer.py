"""What the benchmark's processes share: the frame clock, frame tags, helper processes, and the
dial-in peer (a Twilio stand-in that opens Media Streams to a server, as Twilio does).

``scripts/bench.py`` imports it; so do the helper processes it spawns (``multiprocessing``'s
spawn gives them the parent's ``sys.path``).

Two kinds of tag put a frame's sequence number and send time (``perf_counter_ns`` of the process
that sent it) in its first bytes:
- :func:`frame` / :func:`rtt_ms`: 12 raw bytes (the outbound path and the naive baseline carry
  the payload untouched);
- :func:`ulaw_frame` / :func:`ulaw_tag`: survives a decode to 16-bit PCM and an encode back to
  mu-law, as in an application that works on PCM (Pipecat's Twilio serializer does exactly that):
  ``lin2ulaw(ulaw2lin(b))`` is ``b`` for every byte but 0x7F (mu-law's negative zero, which comes
  back as 0xFF), so the tag is written in hex digits (ASCII) behind a marker, 0xFF after it.

The dial-in peer (:func:`serve_dialer`, run by :class:`Helper`): on ``("load", specs, seconds,
pids)`` it opens one WebSocket per :class:`CallSpec` (first asking the spec's voice webhook, if
it names one, where to stream, as Twilio does for an inbound call), sends ``connected`` and
``start`` (a
stream sid, a call sid, the spec's custom parameters, mu-law 8000 Hz), waits until every call
echoes a probe frame, then for ``seconds`` sends every call a tagged 20 ms frame every 20 ms
from one loop on absolute deadlines, and reads the echoes; a frame not echoed within
:data:`DEADLINE_S` of the last send is lost. It samples the CPU time of the processes named in
``pids`` (``/proc/<pid>/stat``) and its own at the window's two ends, and their RSS at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

FRAME_S = 0.020
FRAME_BYTES = 160
LATE_MS = 100.0
DEADLINE_S = 2.0  # an echo later than this after the last send is counted lost
ACCOUNT = "AC" + "be" * 16


# -- this process and others ------------------------------------------------------------------


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


_CLOCK_TICKS = float(os.sysconf("SC_CLK_TCK"))


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces: count fields after its closing paren.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14, 15


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Helper:
    """A child process serving something; answers requests (its CPU time: ``"cpu"``)."""

    def __init__(self, target: Callable[[Connection], None]) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=target, args=(child,), daemon=True)
        self._process.start()
        child.close()  # the child's end lives in the child: if it dies, recv raises EOFError
        self.url: str = self._conn.recv()

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    def cpu_s(self) -> float:
        return float(self.request("cpu"))

    def request(self, message: object) -> Any:
        self._conn.send(message)
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(10)


def report_cpu_until_stopped(conn: Connection) -> None:
    while conn.recv() == "cpu":
        conn.send(cpu_s())


# -- frame tags -------------------------------------------------------------------------------

_HEADER = struct.Struct(">IQ")  # sequence, perf_counter_ns at send
_FILLER = b"\xff" * (FRAME_BYTES - _HEADER.size)


def frame(tick: int) -> bytes:
    return _HEADER.pack(tick, time.perf_counter_ns()) + _FILLER


def rtt_ms(payload: bytes) -> float:
    return (time.perf_counter_ns() - _HEADER.unpack_from(payload)[1]) / 1e6


_MARK = b"\x5a\xa5"  # neither is 0x7F, nor a hex digit
_HEX = 2 * _HEADER.size
_ULAW_TAG = len(_MARK) + _HEX
_ULAW_FILLER = b"\xff" * (FRAME_BYTES - _ULAW_TAG)
PROBE = 0xFFFFFFFF  # the sequence number of the readiness probe


def ulaw_frame(tick: int) -> bytes:
    """A 20 ms mu-law frame tagged with ``tick`` and the time now, safe through PCM and back."""
    return _MARK + _HEADER.pack(tick, time.perf_counter_ns()).hex().encode() + _ULAW_FILLER


def ulaw_tag(segment: bytes | bytearray) -> tuple[int, int] | None:
    """``(tick, sent_ns)`` of a frame made by :func:`ulaw_frame`; None for any other audio."""
    if segment[:2] != _MARK:
        return None
    try:
        raw = bytes.fromhex(segment[2:_ULAW_TAG].decode("ascii"))
    except ValueError:  # UnicodeDecodeError included
        return None
    if len(raw) != _HEADER.size:
        return None
    tick, sent_ns = _HEADER.unpack(raw)
    return tick, sent_ns


# -- the dial-in peer -------------------------------------------------------------------------


@dataclass(frozen=True)
class CallSpec:
    """Where one call dials its Media Stream, and the ``customParameters`` of its ``start``.

    With ``voice_url``, the call first asks that voice webhook what to do, as Twilio does for
    an inbound call (a signed ``POST`` with the call's fields, under ``auth_token``), and
    dials the ``<Connect><Stream>`` of its answer with that stream's ``<Parameter>``s (``url``
    and ``custom_parameters`` are then not used).
    """

    url: str
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    voice_url: str | None = None
    auth_token: str = ""
    to: str = "+15550100"
    from_: str = "+15550177"


@dataclass
class DialResult:
    """One load step of the dial-in peer; CPU % is of one core over the sending window."""

    calls: int
    ready: int = 0
    sent: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    setup_ms: list[float] = field(default_factory=list)  # dial until the probe's echo
    window_s: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)  # by the names given in pids
    rss_mb: dict[str, float] = field(default_factory=dict)
    peer_pct: float = 0.0
    # CPU seconds from the window's start until the last echo came in (or the deadline), by
    # the names in pids and "peer": divided by the echoes, the CPU per frame even of a step
    # whose echoes came in late (its window's CPU % then misses what it spent after).
    cpu_until_drained_s: dict[str, float] = field(default_factory=dict)

    @property
    def received(self) -> int:
        return len(self.rtts_ms)

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def late(self) -> int:
        return sum(rtt > LATE_MS for rtt in self.rtts_ms)


class Echoes:
    """One call's echoes of :func:`ulaw_frame` frames (ticks ``0 .. ticks - 1``): each timed
    once, in :attr:`rtts` (ms); :attr:`probed` once the :data:`PROBE` frame came back."""

    def __init__(self, ticks: int) -> None:
        self.seen = bytearray(ticks)
        self.rtts: list[float] = []
        self.buffer = bytearray()
        self.probed = False

    def on_probe(self) -> None:
        """The probe came back (a subclass wakes whoever waits on it)."""
        self.probed = True

    def take(self, payload: bytes) -> None:
        """Echoed audio, in whatever chunks the server sends it: cut back into frames."""
        buffer = self.buffer
        buffer += payload
        while len(buffer) >= FRAME_BYTES:
            tag = ulaw_tag(buffer[:FRAME_BYTES])
            del buffer[:FRAME_BYTES]
            if tag is None:
                continue  # audio of the server's own (silence)
            tick, sent_ns = tag
            if tick == PROBE:
                self.on_probe()
            elif tick < len(self.seen) and not self.seen[tick]:
                self.seen[tick] = 1
                self.rtts.append((time.perf_counter_ns() - sent_ns) / 1e6)


_MEDIA_OUT: list[type] = []  # actors.codecs.twilio.MediaOut, imported in the helper process only


class _Wire(asyncio.Protocol):
    """One call's socket once websockets has dialled it: RFC 6455 from here on by
    :class:`actors.wire.ClientProtocol` (sans-I/O; it answers pings and the close), each
    message straight to the call.

    This process shares the two cores with what it measures, and websockets' reader costs a
    generator-driven parse, a queue, a future and a task wake per message, its ``send`` a
    coroutine, a context manager and an ``os.urandom`` call per frame: N calls times fifty a
    second each way. The bytes on the wire are the same (a client's masked frames, as
    Twilio's); nothing waits on a send: a peer that could not keep up shows as late frames.
    """

    def __init__(self, transport: Any, on_message: Callable[[str | bytes], None]) -> None:
        from actors.wire import ClientProtocol, State  # noqa: PLC0415

        self._open, self._closed_state = State.OPEN, State.CLOSED
        self.protocol = ClientProtocol(max_message_bytes=None)
        self.transport = transport
        self.on_message = on_message
        self.closed = asyncio.get_running_loop().create_future()
        transport.set_protocol(self)

    @staticmethod
    def take_over(ws: Any, on_message: Callable[[str | bytes], None]) -> _Wire | None:
        """The socket of ``ws`` (just opened), if websockets holds nothing read from it yet
        (else it stays websockets': no half-parsed frame is lost)."""
        if ws.protocol.reader.buffer or len(ws.recv_messages.frames):
            return None
        return _Wire(ws.transport, on_message)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        on_message = self.on_message
        for event in protocol.events_received():
            if type(event) is str or type(event) is bytes:
                on_message(event)
        out = protocol.data_to_send()  # pongs, the answer to a close
        if out:
            self.transport.write(out)
        if protocol.state is self._closed_state:
            self.transport.close()

    def eof_received(self) -> bool | None:
        if self.protocol.state is not self._closed_state:
            self.protocol.receive_eof()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        protocol = self.protocol
        if protocol.state is not self._open:
            raise ConnectionError(f"the connection is {protocol.state.value}")
        protocol.send_text(text.encode())
        self.transport.write(protocol.data_to_send())

    async def close(self, timeout: float) -> None:
        """The close handshake (our close frame, the server's), or an abort after ``timeout``."""
        protocol = self.protocol
        if protocol.state is self._open:
            protocol.send_close()
            self.transport.write(protocol.data_to_send())
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()


class _Call(Echoes):
    def __init__(self, ws: Any, stream: Any, ticks: int) -> None:
        super().__init__(ticks)
        self.ws = ws
        self.wire: _Wire | None = None  # set when the call's socket was taken off websockets
        self.stream = stream
        self.ready = asyncio.Event()
        self.errors = 0

    def on_probe(self) -> None:
        super().on_probe()
        self.ready.set()

    def on_message(self, message: str | bytes) -> None:
        """One message from the server: its audio, if it is Twilio's ``media``."""
        try:
            event = self.stream.parse(message)
        except ValueError:
            self.errors += 1
            return
        if type(event) is _MEDIA_OUT[0]:
            self.take(event.payload)

    async def send(self, text: str) -> None:
        wire = self.wire
        if wire is not None:
            wire.send_text(text)
        else:
            await self.ws.send(text)

    async def close(self, timeout: float) -> None:
        wire = self.wire
        if wire is not None:
            await wire.close(timeout)
        else:
            await asyncio.wait_for(self.ws.close(), timeout)


async def _read(call: _Call) -> None:
    """websockets' reader, for a call whose socket could not be taken over."""
    with contextlib.suppress(Exception):  # the connection closing ends the reader
        async for message in call.ws:
            call.on_message(message)


def _ask_voice_webhook(spec: CallSpec, call_sid: str) -> tuple[str, dict[str, str]]:
    """The stream URL and custom parameters a voice webhook answers for a new inbound call
    (blocking: run off the event loop). Raises ``RuntimeError`` for anything else."""
    from actors.emulator.callbacks import http_request  # noqa: PLC0415
    from actors.emulator.twiml import parse_stream_target  # noqa: PLC0415

    assert spec.voice_url is not None
    fields = {
        "AccountSid": ACCOUNT,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": spec.to,
        "Caller": spec.from_,
        "Direction": "inbound",
        "From": spec.from_,
        "To": spec.to,
        "CallerName": "",
        "ForwardedFrom": "",
    }
    answer = http_request(spec.voice_url, fields, spec.auth_token, timeout=30)
    if not answer.ok:
        raise RuntimeError(f"voice webhook: {answer.error or answer.status}")
    target = parse_stream_target(answer.body)
    if target is None:
        raise RuntimeError(f"voice webhook answered no <Connect><Stream>: {answer.body[:200]}")
    return target.url, dict(target.parameters)


async def _dial(
    specs: list[CallSpec], seconds: float, pids: Mapping[str, int], result: DialResult
) -> None:
    from websockets.asyncio.client import connect  # noqa: PLC0415

    from actors.codecs.twilio import MediaOut, TwilioStream, new_sid  # noqa: PLC0415

    _MEDIA_OUT[:] = [MediaOut]

    ticks = int(seconds / FRAME_S)
    calls: list[_Call] = []
    readers: list[asyncio.Task[None]] = []
    opening = asyncio.Semaphore(8)  # as the outbound sweep: eight call set-ups at a time

    async def open_call(spec: CallSpec) -> None:
        async with opening:
            t0 = time.perf_counter()
            call_sid = new_sid("CA")
            url, parameters = spec.url, spec.custom_parameters
            try:
                if spec.voice_url is not None:
                    url, parameters = await asyncio.to_thread(_ask_voice_webhook, spec, call_sid)
                ws = await connect(
                    url,
                    compression=None,  # as Twilio: Media Streams are not compressed
                    open_timeout=10,
                    ping_interval=None,
                    max_size=None,
                )
            except Exception as exc:
                result.errors.append(f"dial {url}: {type(exc).__name__}: {exc}")
                return
            stream = TwilioStream(new_sid("MZ"), call_sid, ACCOUNT, custom_parameters=parameters)
            call = _Call(ws, stream, ticks)
            call.wire = _Wire.take_over(ws, call.on_message)
            calls.append(call)
            if call.wire is None:
                readers.append(asyncio.create_task(_read(call)))
            await call.send(stream.connected())
            await call.send(stream.start())
        # The server may drop audio until its pipeline runs: probe until one comes back.
        deadline = time.perf_counter() + 30
        while not call.ready.is_set() and time.perf_counter() < deadline:
            await call.send(stream.media(ulaw_frame(PROBE), 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(call.ready.wait(), 0.2)
        if call.ready.is_set():
            result.setup_ms.append((time.perf_counter() - t0) * 1000)
        else:
            result.errors.append(f"{stream.call_sid}: no echo of the probe within 30 s")

    await asyncio.gather(*(open_call(spec) for spec in specs))
    live = [call for call in calls if call.ready.is_set()]
    result.ready = len(live)
    loop = asyncio.get_running_loop()
    cpu0 = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    self0, wall0 = cpu_s(), time.perf_counter()
    start = loop.time()
    for tick in range(ticks):
        delay = start + tick * FRAME_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        timestamp = tick * 20
        for call in list(live):
            try:
                wire = call.wire
                frame = call.stream.media(ulaw_frame(tick), timestamp)
                if wire is not None:
                    wire.send_text(frame)  # the common case: no coroutine per frame
                else:
                    await call.ws.send(frame)
                result.sent += 1
            except Exception as exc:
                result.errors.append(f"{call.stream.call_sid}: send: {exc}")
                live.remove(call)
    wall = time.perf_counter() - wall0
    result.window_s = wall
    result.cpu_pct = {
        name: 100 * (proc_cpu_s(pid) - cpu0[name]) / wall for name, pid in pids.items()
    }
    result.peer_pct = 100 * (cpu_s() - self0) / wall
    result.rss_mb = {name: rss_mb(pid) for name, pid in pids.items()}
    deadline = time.perf_counter() + DEADLINE_S
    while time.perf_counter() < deadline and sum(len(c.rtts) for c in calls) < result.sent:
        await asyncio.sleep(0.01)
    result.cpu_until_drained_s = {
        name: proc_cpu_s(pid) - cpu0[name] for name, pid in pids.items()
    } | {"peer": cpu_s() - self0}
    for call in calls:
        result.rtts_ms.extend(call.rtts)
        if call.errors:
            result.errors.append(f"{call.stream.call_sid}: {call.errors} frames not understood")

    async def hang_up(call: _Call) -> None:
        with contextlib.suppress(Exception):
            await call.send(call.stream.stop())
            await call.close(5)

    await asyncio.gather(*(hang_up(call) for call in calls))
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


def run_dial(specs: list[CallSpec], seconds: float, pids: Mapping[str, int]) -> DialResult:
    """One load step (see the module docstring), on a new event loop (uvloop's if installed)."""
    try:
        import uvloop  # noqa: PLC0415

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    result = DialResult(calls=len(specs))
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_dial(specs, seconds, pids, result))
    return result


def serve_dialer(conn: Connection) -> None:
    """:class:`Helper` target: ``("load", specs, seconds, pids)`` -> :class:`DialResult`."""
    conn.send("")  # no URL: it dials, nobody dials it
    while True:
        message = conn.recv()
        if message == "cpu":
            conn.send(cpu_s())
        elif isinstance(message, tuple) and message[0] == "load":
            _, specs, seconds, pids = message
            conn.send(run_dial(specs, seconds, pids))
        else:
            return
