"""One benchmark row per telephony provider (issues 15 and 16): outbound calls through each
provider's emulator in ``reflect`` mode, in a process of its own.

Per provider, the runtime (the bench process: ``TransportService``) places N calls over the
provider's REST API (its emulator's), each streamed through the media gateway process to the
emulator's phone, which sends every media frame's audio straight back in the provider's own
framing. One thread writes every call a tagged 20 ms mu-law frame every 20 ms on absolute
deadlines (:func:`_peer.ulaw_frame`), one reader thread per call times each echo once. Every
application here reads and writes mu-law at 8 kHz; the PCM providers (Vonage, Exotel) carry
PCM16 at 8 kHz on the wire, so their runtime converts each frame mu-law -> PCM16 on the way out
and back on the way in (G.711 only, no resampling: the tag survives, see ``_peer``). CPU: the
runtime, the gateway and the emulator (its API and phones), % of one core over the window.

:func:`conversion_cost` measures that conversion alone (the codecs' ``Converter``, one call's
two directions), for the note on what the PCM providers cost.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from _peer import (
    DEADLINE_S,
    FRAME_S,
    LATE_MS,
    Echoes,
    Helper,
    cpu_s,
    pct,
    proc_cpu_s,
    rss_mb,
    ulaw_frame,
)
from _rows import PeerRow

from actors import Audio, Binary, Started, TransportService
from actors.codecs.pcm import AudioFormat, Converter
from actors.config import (
    EmulatorConfig,
    ExotelProviderConfig,
    GatewayConfig,
    InboundConfig,
    PlivoProviderConfig,
    RuntimeConfig,
    TelnyxProviderConfig,
    TransportConfig,
    TwilioProviderConfig,
    VonageProviderConfig,
)
from actors.config.providers import ProviderConfig
from actors.errors import ReadTimeout

PROVIDERS = ("twilio", "telnyx", "plivo", "vonage", "exotel")
ACCOUNT = "AC" + "be" * 16
AUTH = "bench-auth-token"
TO, FROM = "+15550100", "+15550199"
#: What crosses the wire between gateway and phone, per provider (the app reads mu-law 8 kHz).
WIRE = {
    "twilio": "mu-law 8 kHz, base64 JSON",
    "telnyx": "PCMU 8 kHz, base64 JSON",
    "plivo": "mu-law 8 kHz, base64 JSON",
    "vonage": "PCM16 8 kHz, binary 320 B",
    "exotel": "PCM16 8 kHz, base64 JSON, 3200 B chunks",
}


# -- the emulator's process --------------------------------------------------------------------


def _emulator(provider: str, config: EmulatorConfig) -> tuple[Any, dict[str, str]]:
    """The provider's emulator (not started), and what the runtime needs to call through it."""
    if provider == "twilio":
        from actors.emulator.phone import TwilioEmulator  # noqa: PLC0415

        return TwilioEmulator(config, {ACCOUNT: AUTH}), {}
    if provider == "telnyx":
        from actors.emulator.telnyx import TelnyxEmulator  # noqa: PLC0415

        telnyx = TelnyxEmulator(config, AUTH)
        return telnyx, {"connection_id": telnyx.connection_id}
    if provider == "plivo":
        from actors.emulator.plivo import PlivoEmulator  # noqa: PLC0415

        plivo = PlivoEmulator(config, AUTH)
        return plivo, {"auth_id": plivo.auth_id}
    if provider == "vonage":
        from actors.emulator.vonage import VonageEmulator  # noqa: PLC0415

        vonage = VonageEmulator(config)
        return vonage, {"application_id": vonage.application_id, "private_key": vonage.private_key}
    if provider == "exotel":
        from actors.emulator.exotel import ExotelEmulator  # noqa: PLC0415

        exotel = ExotelEmulator(config)
        keys = {"account_sid": exotel.account_sid, "api_key": exotel.api_key}
        return exotel, {**keys, "api_token": exotel.api_token}
    raise ValueError(f"no emulator for provider {provider!r}")


def serve_emulator(provider: str, conn: Connection) -> None:
    """:class:`Helper` target: the provider's emulator in ``reflect`` mode; answers ``"cpu"``
    and ``"info"`` (the account the runtime uses, for this run only) until ``"stop"``."""
    emulator, info = _emulator(provider, EmulatorConfig(media="reflect"))
    emulator.start()
    conn.send(emulator.url)
    while (message := conn.recv()) != "stop":
        conn.send(cpu_s() if message == "cpu" else info)
    emulator.stop()


def emulator_helper(provider: str) -> Helper:
    return Helper(functools.partial(serve_emulator, provider))


# -- the runtime's side ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _provider(provider: str, url: str, info: dict[str, str]) -> ProviderConfig:
    mulaw = {"audio_encoding": "audio/x-mulaw", "audio_sample_rate": 8000, "sample_rate": 8000}
    if provider == "twilio":
        return TwilioProviderConfig(
            name=provider, account_sid=ACCOUNT, auth_token=AUTH, api_base_url=url
        )
    if provider == "telnyx":
        return TelnyxProviderConfig(
            name=provider, api_key=AUTH, api_base_url=url, connection_id=info["connection_id"]
        )
    if provider == "plivo":
        return PlivoProviderConfig(
            name=provider, auth_id=info["auth_id"], auth_token=AUTH, api_base_url=url
        )
    if provider == "vonage":
        keys = {"application_id": info["application_id"], "private_key": info["private_key"]}
        return VonageProviderConfig(name=provider, api_base_url=url, **keys, **mulaw)  # type: ignore[arg-type]
    keys = {k: info[k] for k in ("account_sid", "api_key", "api_token")}
    return ExotelProviderConfig(name=provider, api_base_url=url, **keys, **mulaw)  # type: ignore[arg-type]


def service_config(
    provider: str, emulator: Helper, gateway_url: str, secret: str, n: int
) -> TransportConfig:
    """The runtime's config for ``provider`` through its emulator and the gateway process.

    Plivo's call asks its answer URL what to stream: the runtime's own webhook answers it, on a
    port chosen here so that its public URL (what the emulator posts to, and signs) is known."""
    info: dict[str, str] = emulator.request("info")
    inbound = InboundConfig(max_sessions=max(16, 2 * n))
    if provider == "plivo":
        address = f"127.0.0.1:{_free_port()}"
        inbound = InboundConfig(
            listen=address, public_url=f"http://{address}", max_sessions=max(16, 2 * n)
        )
    return TransportConfig(
        runtime=RuntimeConfig(ping_interval_s=10.0, ping_timeout_s=10.0),
        providers={provider: _provider(provider, emulator.url, info)},
        gateway=GatewayConfig(embedded=False, url=gateway_url, secret=secret),
        inbound=inbound,
    )


def load_provider(
    provider: str, n: int, seconds: float, gateway: Helper, emulator: Helper, secret: str
) -> PeerRow:
    """N outbound calls of ``provider`` for ``seconds`` of load (see the module docstring)."""
    config = service_config(provider, emulator, gateway.url, secret, n)
    pids = {"runtime": os.getpid(), "gateway": gateway.pid, "emulator": emulator.pid}
    idle_rss = {name: rss_mb(pid) for name, pid in pids.items()}
    ticks = int(seconds / FRAME_S)
    errors: list[str] = []
    setup_ms: list[float] = []
    sent = 0
    with TransportService(config) as service:

        def create(_: int) -> str | None:
            t0 = time.perf_counter()
            try:
                sid = service.create_session(provider=provider, to=TO, from_=FROM).session_id
                while not isinstance(service.read_websocket_message(sid, timeout=10), Started):
                    pass
            except Exception as exc:
                errors.append(f"create: {type(exc).__name__}: {exc}")
                return None
            setup_ms.append((time.perf_counter() - t0) * 1000)
            return sid

        with ThreadPoolExecutor(8) as pool:
            sids = [sid for sid in pool.map(create, range(n)) if sid is not None]
        echoes = {sid: Echoes(ticks) for sid in sids}
        done = threading.Event()

        def read(sid: str) -> None:
            lane = echoes[sid]
            try:
                while len(lane.rtts) < ticks and not done.is_set():
                    try:
                        message = service.read_websocket_message(sid, timeout=0.2)
                    except ReadTimeout:  # quiet for a moment (Exotel's chunks): read on
                        continue
                    if isinstance(message, Audio):
                        lane.take(bytes(message.data))
            except Exception as exc:
                errors.append(f"{sid}: {type(exc).__name__}: {exc}")

        readers = [threading.Thread(target=read, args=(sid,), name="bench-read") for sid in sids]
        for reader in readers:
            reader.start()
        write = service.write_websocket_message
        cpu0 = {name: proc_cpu_s(pid) for name, pid in pids.items()}
        wall0 = time.perf_counter()
        waiter = threading.Event()
        for tick in range(ticks):
            delay = wall0 + tick * FRAME_S - time.perf_counter()
            if delay > 0:
                waiter.wait(delay)
            message = Binary(ulaw_frame(tick))
            for sid in sids:
                write(sid, message)
            sent += len(sids)
        wall = time.perf_counter() - wall0
        cpu = {name: 100 * (proc_cpu_s(pid) - cpu0[name]) / wall for name, pid in pids.items()}
        rss = {name: rss_mb(pid) for name, pid in pids.items()}
        deadline = time.perf_counter() + DEADLINE_S  # then what has not come back is lost
        for reader in readers:
            reader.join(max(0.0, deadline - time.perf_counter()))
        done.set()
        for reader in readers:
            reader.join(5)
        for sid in sids:
            service.end_session(sid)
    rtts = [rtt for lane in echoes.values() for rtt in lane.rtts]
    if len(sids) < n:
        errors.append(f"{n - len(sids)} calls never started")
    return PeerRow(
        provider,
        n,
        sent,
        rtts,
        sum(rtt > LATE_MS for rtt in rtts),
        errors,
        cpu,
        sum(rss.values()),
        sum(rss[name] - idle_rss[name] for name in rss) / n,
        0.0,
        setup_ms,
    )


def provider_rows(
    providers: list[str], sweep: list[int], seconds: float, gateway: Helper, secret: str
) -> list[PeerRow]:
    """Per provider (its emulator started for it, then stopped), per N: one row."""
    rows: list[PeerRow] = []
    for provider in providers:
        emulator = emulator_helper(provider)
        try:
            for n in sweep:
                rows.append(load_provider(provider, n, seconds, gateway, emulator, secret))
                print(provider_row(rows[-1]), flush=True, file=sys.stderr)
        finally:
            emulator.stop()
    return rows


# -- the conversion alone ----------------------------------------------------------------------


def conversion_cost(wire_rate: int, frames: int = 2_000) -> float:
    """CPU ms per second of call of a PCM provider's conversion, both directions (the
    application's mu-law 8 kHz to PCM16 at ``wire_rate`` and back), with the codecs' own
    ``Converter``s (resampling too when ``wire_rate`` is not 8000)."""
    app, wire = AudioFormat("audio/x-mulaw", 8000), AudioFormat("pcm16", wire_rate)
    out, back = Converter(app, wire), Converter(wire, app)
    frame = ulaw_frame(0)
    pcm = out.convert(frame)
    t0 = time.process_time()
    for _ in range(frames):
        out.convert(frame)
        back.convert(pcm)
    per_frame_s = (time.process_time() - t0) / frames
    return per_frame_s * 1000 / FRAME_S  # 50 frames each way per second of call


# -- the table ---------------------------------------------------------------------------------

PROVIDER_HEADER = [
    "| N | provider | wire (gateway <-> phone) | p50 ms | p99 ms | p99.9 ms | sent | lost "
    "| late | errors | CPU % by process | CPU % | CPU ms/s per call | set-up p50 ms |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
]


def provider_row(r: PeerRow) -> str:
    by_process = ", ".join(f"{name} {value:.0f}" for name, value in r.cpu_pct.items())
    return (
        f"| {r.sessions} | {r.impl} | {WIRE.get(r.impl, '')} | {pct(r.rtts_ms, 0.5):.2f} | "
        f"{pct(r.rtts_ms, 0.99):.2f} | {pct(r.rtts_ms, 0.999):.2f} | {r.sent} | {r.lost} | "
        f"{r.late} | {len(r.errors)} | {by_process} | {r.cpu_total:.0f} | "
        f"{r.cpu_per_call:.2f} | {pct(r.setup_ms, 0.5):.0f} |"
    )


PROVIDERS_BEGIN = "<!-- providers: begin (written by bench.py --providers) -->"
PROVIDERS_END = "<!-- providers: end -->"


def providers_report(
    rows: list[PeerRow], seconds: float, command: str, date: str, load: str
) -> str:
    """The providers' section of BENCHMARKS.md, between its markers (``load``: how busy the
    machine was, :func:`_rows.load_line`)."""
    twilio = {row.sessions: row for row in rows if row.impl == "twilio"}
    lines = [*PROVIDER_HEADER, *map(provider_row, rows)]
    compared = []
    for row in rows:
        base = twilio.get(row.sessions)
        if row.impl != "twilio" and base is not None:
            runtime = 10 * (row.cpu_pct["runtime"] - base.cpu_pct["runtime"]) / row.sessions
            more = row.cpu_per_call - base.cpu_per_call
            compared.append(f"{row.impl} {more:+.2f} ms/s (runtime {runtime:+.2f})")
    g711, resampled = conversion_cost(8000), conversion_cost(16000)
    return "\n".join(
        [
            PROVIDERS_BEGIN,
            "## One row per provider (issues 15 and 16)",
            "",
            f"Command: `{command}`  ",
            f"Date: {date}  ",
            load,
            "",
            f"Per provider and N, {seconds:g} s of load: the runtime (the bench process) places N "
            "outbound calls over the provider's REST API, served by its emulator in a process "
            "of its own in `reflect` mode (every media frame's audio sent straight back in the "
            "provider's framing, every mark answered at once); each call's audio goes through "
            "the media gateway process. Every 20 ms the bench writes each call one tagged 20 ms "
            "mu-law frame and times its echo; a frame not back 2 s after the last send is lost. "
            "The application reads and writes mu-law 8 kHz on every provider: Vonage's and "
            "Exotel's runtime codecs convert it to PCM16 8 kHz on the wire and back (G.711, no "
            "resampling). CPU % (of one core) is of the runtime, the gateway and the emulator; "
            "CPU ms/s per call is their sum per second of call.",
            "",
            *lines,
            "",
            "- CPU per call beside Twilio's at the same N (all three processes; the runtime's "
            "part in brackets): " + (", ".join(compared) or "no Twilio row to compare with"),
            f"- the PCM providers' conversion alone (the codecs' `Converter`, one call's two "
            f"directions, mu-law 8 kHz <-> PCM16): **{g711:.3f} ms of CPU per second of call** "
            f"at an 8 kHz wire (G.711 only, as in the rows above); {resampled:.3f} ms/s at "
            "16 kHz (G.711 and the resampler), Vonage's default rate",
            "- Exotel's latency is its protocol's: outbound media goes in chunks of at least "
            "3,200 bytes (200 ms of 8 kHz PCM16), so the runtime holds each frame until its "
            "chunk is full, and the phone sends back 100 ms chunks",
            PROVIDERS_END,
        ]
    )
