"""``transport-actors gateway`` and ``transport-actors emulator``: the media gateway or the
Twilio emulator, standalone, until Ctrl-C or SIGTERM (either is how they end: exit 0).

Each says where it listens and then prints ``ready``; the signal handlers are in place before
that line, so a SIGTERM sent on seeing it always stops the server cleanly.

With a ``cluster`` section the gateway is a member of the cluster
(:class:`~actors.cluster.ClusterMember`, kind ``gateway``, id ``cluster.node_id``): it
registers its URLs (``public``: where providers dial, ``session``: where sessions dial; the
bases, before ``/twilio`` and ``/sessions/<id>``), heart-beats its load (the calls it holds)
and deregisters when it stops. A first Ctrl-C or SIGTERM then drains it (``--drain-timeout``,
30 s by default in a cluster, 0 without): it is marked draining in the registry, refuses new
calls, and stops once its calls have ended, the timeout has passed, or a second signal came.
``transport-actors drain --node ID`` drains it the same way from outside, without stopping it.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
import time
from typing import TYPE_CHECKING

from ..config import TransportConfig, TwilioProviderConfig
from ._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _config, _Signals, _wait_for

if TYPE_CHECKING:
    from ..cluster import ClusterMember
    from ..gateway.server import MediaGateway

_READY = "ready; Ctrl-C or SIGTERM stops it"
_DIAL_IN_TO, _DIAL_IN_FROM = "+15550100", "+15550199"  # `emulator --dial-in`: our number, a caller
CLUSTER_DRAIN_S = 30.0  # --drain-timeout's default with a cluster section (0 without)


def _cmd_gateway(args: argparse.Namespace) -> int:
    from ..gateway.server import MediaGateway  # noqa: PLC0415

    config = _config(args)
    if not config.gateway.secret:
        print(
            f"error: {args.config}: gateway.secret: required for a standalone gateway (the "
            "services that dial it use the same secret)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    cluster = config.cluster
    gateway_id = cluster.member_id if cluster is not None else None
    gateway = MediaGateway(config.gateway, gateway_id=gateway_id)
    drain_s = getattr(args, "drain_timeout", None)
    if drain_s is None:
        drain_s = CLUSTER_DRAIN_S if cluster is not None else 0.0
    stop = threading.Event()
    # Installed before the gateway says it is ready, so that a SIGTERM sent on seeing "ready"
    # is never the default (abrupt) one; a signal during the start-up stops it right after.
    with _Signals(stop):
        try:
            gateway.start()
        except OSError as exc:
            print(
                f"error: cannot listen on {config.gateway.listen}: {exc.strerror}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return _serve_gateway(gateway, config, stop, float(drain_s))


def _join_cluster(gateway: MediaGateway, config: TransportConfig) -> ClusterMember | None:
    """The gateway's membership of the cluster, started (``None`` without a cluster)."""
    if config.cluster is None:
        return None
    from ..cluster import ClusterMember  # noqa: PLC0415 (redis only with a cluster section)

    member = ClusterMember(
        config.cluster,
        kind="gateway",
        urls={"public": gateway.public_url, "session": gateway.url},
        load=lambda: gateway.calls_active,
        on_drain=lambda _: gateway.drain(),
    )
    return member.start()


def _drain(
    gateway: MediaGateway, member: ClusterMember | None, stop: threading.Event, drain_s: float
) -> None:
    """After a first signal: take no new call and wait (at most ``drain_s``, or until a
    second signal) for the calls held to end."""
    if drain_s <= 0 or gateway.calls_active == 0:
        return
    stop.clear()  # a second signal sets it again: stop at once
    if member is not None:
        member.drain()
    gateway.drain()
    print(
        f"media gateway: draining {gateway.calls_active} calls (at most {drain_s:g} s)", flush=True
    )
    deadline = time.monotonic() + drain_s
    while gateway.calls_active and time.monotonic() < deadline and not stop.wait(0.1):
        pass


def _serve_gateway(
    gateway: MediaGateway, config: TransportConfig, stop: threading.Event, drain_s: float = 0.0
) -> int:
    from ..metrics import GatewayMetrics, MetricsServer  # noqa: PLC0415

    metrics: MetricsServer | None = None
    member: ClusterMember | None = None
    try:
        member = _join_cluster(gateway, config)
        if member is not None:
            print(f"media gateway: cluster member {member.node_id}", flush=True)
        if config.metrics.listen is not None:
            try:
                status = member.status if member is not None else None
                metrics = GatewayMetrics(gateway.stats, status).serve(config.metrics.listen)
            except OSError as exc:
                print(
                    f"error: metrics.listen: cannot listen on {config.metrics.listen}: "
                    f"{exc.strerror}",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            print(f"media gateway: metrics at {metrics.url}", flush=True)
        print(f"media gateway: sessions dial {gateway.url}/sessions/<id>", flush=True)
        print(f"media gateway: providers dial {gateway.public_url}/twilio", flush=True)
        print(_READY, flush=True)
        _wait_for(stop)
        _drain(gateway, member, stop, drain_s)
    finally:
        if member is not None:
            member.stop()  # deregistered first: no new call is sent here meanwhile
        gateway.stop()
        if metrics is not None:
            metrics.stop()
        print(f"media gateway stopped: {gateway.stats()}", flush=True)
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from ..embedded import EMULATOR_ACCOUNT_SID  # noqa: PLC0415
    from ..emulator.phone import TwilioEmulator  # noqa: PLC0415

    config = _config(args)
    dial_in = int(getattr(args, "dial_in", 0) or 0)
    if dial_in < 0 or (dial_in and not config.emulator.voice_url):
        print(
            "error: --dial-in needs N >= 0 and emulator.voice_url set (the URL to call)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    account, token, shown = EMULATOR_ACCOUNT_SID, "", False
    for provider in config.providers.values():
        if (
            isinstance(provider, TwilioProviderConfig)
            and provider.account_sid
            and provider.auth_token
        ):
            account, token = provider.account_sid, provider.auth_token
            break
    if not token:
        # A made-up account for this run only: print the token so that a client can use it.
        token, shown = secrets.token_urlsafe(16), True
    emulator = TwilioEmulator(config.emulator, {account: token})
    stop = threading.Event()
    with _Signals(stop):  # before "ready", as for the gateway
        try:
            emulator.start()
        except OSError as exc:
            print(
                f"error: cannot listen on {config.emulator.listen}: {exc.strerror}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        try:
            print(f"Twilio emulator: api_base_url {emulator.url}", flush=True)
            print(f"Twilio emulator: account {account}", flush=True)
            if shown:
                print(f"Twilio emulator: auth token {token} (made up for this run)", flush=True)
            print(_READY, flush=True)
            for _ in range(dial_in):
                call = emulator.place_inbound_call(_DIAL_IN_TO, _DIAL_IN_FROM)
                print(f"Twilio emulator: inbound call {call.sid} to {call.url}", flush=True)
            _wait_for(stop)
        finally:
            emulator.stop()
    return EXIT_OK
