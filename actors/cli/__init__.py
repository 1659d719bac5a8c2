"""The ``transport-actors`` command.

::

    transport-actors [--log-level LEVEL] [--log-format text|json] COMMAND ...
    transport-actors demo    [-c FILE] [--provider NAME] [--sessions N] [--seconds S]
                             [--frame-ms MS] [--inbound] [--no-progress]
    transport-actors call    [-c FILE] [--provider NAME] --to NUMBER [--from NUMBER]
                             [--play IN.wav] [--record OUT.wav] [--seconds S]
    transport-actors answer  [-c FILE] [--provider NAME] [--wav FILE] [--record DIR]
                             [--seconds S] [--max-calls N] [--dial-in N]
                             [--applet-url-file FILE]
    transport-actors gateway -c FILE [--drain-timeout S]
    transport-actors cluster status -c FILE [--json]
    transport-actors drain   -c FILE --node ID [--wait S]
    transport-actors emulator [-c FILE] [--dial-in N]
    transport-actors check   -c FILE
    transport-actors --version

``demo`` places N calls through a :class:`~actors.TransportService` and streams 20 ms mu-law
frames (a 440 Hz tone) both ways at real time for S seconds. With the default ``twilio``
provider each call is real end to end on loopback: the Twilio connector creates it on the
embedded emulator's REST API, the emulator dials the embedded media gateway as Twilio would,
plays what the session sends and echoes it back, with a mark every second. With
``--provider websocket`` the sessions go straight to a local echo server instead. It checks
that every frame (and mark) came back in order, prints the round trip, and exits 0 only if
nothing was lost and nothing went wrong.

``call`` places one call, plays a WAV file into it at real time (converted to the provider's
format: 8 kHz mu-law for Twilio, resampled with soxr), records what the other side sends to a
WAV file, and hangs up once the file has played (after a final mark comes back, so that the
tail is recorded), after ``--seconds``, or on Ctrl-C or SIGTERM; then prints a summary. With
the embedded default configuration it calls the local emulator, which echoes what it hears.

``demo --inbound`` has N emulated callers dial the service's voice webhook instead; N worker
threads take them with ``accept_session``, and the traffic and checks are the same, plus the
accept latency (``dial_in`` to ``accept_session`` returned).

``answer`` prints the voice webhook's URL, answers calls until ``--max-calls`` or a signal,
plays a WAV file into each as ``call`` does, records each caller to ``DIR/<call sid>.wav``
and hangs up at the end of the file; ``--dial-in N`` has the embedded emulator call it N
times, so that it runs with no account.

``gateway`` runs the media gateway standalone (and serves ``/metrics`` for it when
``metrics.listen`` is set); ``emulator`` runs the Twilio emulator standalone (its REST API URL
and account are printed).

``cluster status`` lists the cluster's runtime nodes and gateways (load, capacity, draining,
last heartbeat, URLs) from its Redis; ``drain`` marks one of them draining there (it takes no
new call; its calls go on): :mod:`~actors.cli.cluster`. Either exits 2 when Redis is
unreachable.

``--log-format json`` writes one JSON object per log line (``time``, ``level``, ``logger``,
``message``, ``session_id`` when the line is about a session); secrets are masked either way.

``check`` validates a config file and prints it with every secret masked.

Exit codes: 0 success, 1 the demo saw errors or lost frames, the call did not play out, an
answered call had an error (or a transport error), 2 a usage or configuration error, 130
interrupted (Ctrl-C), 143 terminated (SIGTERM) during ``demo``, ``call`` or ``answer``
(``gateway`` and ``emulator`` exit 0 on either: stopping is how they end). Every session is
ended before the command exits, whatever stopped it.

One module per command: :mod:`~actors.cli.demo` (and :mod:`~actors.cli.demo_inbound`),
:mod:`~actors.cli.call`, :mod:`~actors.cli.answer`, :mod:`~actors.cli.servers` (``gateway``
and ``emulator``) and :mod:`~actors.cli.check`; :mod:`~actors.cli._common` holds what they
share (exit codes, signal handling, the config lookup, logging set-up),
:mod:`~actors.cli._measure` what both demos count and print, and :mod:`~actors.cli._leg` how
``call`` and ``answer`` play and record one session. This module assembles the parser and
runs :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from ..errors import ConfigError, TransportError
from ._common import (
    _LOG_FORMATS,
    _LOG_LEVELS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PROG,
    _positive,
    _start_logging,
)
from .answer import _cmd_answer
from .call import _cmd_call
from .check import _cmd_check
from .cluster import _cmd_cluster_status, _cmd_drain
from .demo import _cmd_demo, _frame_ms
from .servers import _cmd_emulator, _cmd_gateway

__all__ = ["main"]


def _add_cluster_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cluster status`` and ``drain``: the commands that read or mark the registry."""
    cluster = commands.add_parser(
        "cluster",
        help="the cluster's registry: nodes and gateways",
        description="Read the cluster's registry in its Redis (the config's cluster section).",
    )
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_commands.add_parser(
        "status",
        help="list the healthy nodes and gateways with their load",
        description=(
            "List the healthy runtime nodes and gateways: load/capacity, draining, the age of "
            "the last heartbeat, URLs. Exit 0; 2 when Redis is unreachable."
        ),
    )
    status.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    status.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    status.set_defaults(func=_cmd_cluster_status)

    drain = commands.add_parser(
        "drain",
        help="mark a node (or gateway) draining: no new call, its calls go on",
        description=(
            "Mark the runtime node or gateway ID draining in the cluster's registry: it takes "
            "no new call from now on and its calls go on (for rolling deploys). Exit 0; 1 no "
            "such healthy member (or, with --wait, calls left); 2 Redis unreachable."
        ),
    )
    drain.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    drain.add_argument("--node", required=True, metavar="ID", help="the node's or gateway's id")
    drain.add_argument(
        "--wait",
        type=_positive(float),
        metavar="S",
        help="then wait up to S seconds for its calls to end (exit 1 if some are left)",
    )
    drain.set_defaults(func=_cmd_drain)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="One pykka actor per WebSocket voice session, behind a synchronous facade.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LOG_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help=f"log to stderr at this level: {', '.join(_LOG_LEVELS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=_LOG_FORMATS,
        default="text",
        help=(
            "text lines, or one JSON object per line (time, level, logger, message, "
            "session_id when known); secrets are masked either way (default: %(default)s)"
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="place N emulated calls and stream a tone through them both ways",
        description=(
            "Place N calls (by default emulated Twilio calls through the embedded gateway; "
            "with --provider websocket, sessions to a local echo server), send one frame per "
            "session every --frame-ms for --seconds, check every echo came back in order, and "
            "print the round-trip latency. Exit status 0 only if no frame was lost and no "
            "error occurred."
        ),
    )
    demo.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: the embedded default configuration)",
    )
    demo.add_argument(
        "--provider",
        default="twilio",
        metavar="NAME",
        help=(
            "the configured provider to use: a twilio, telnyx, plivo, vonage or exotel one "
            "(calls through the gateway; PCM16 frames for vonage and exotel) or a "
            "websocket one (straight to a local echo server) (default: %(default)s)"
        ),
    )
    demo.add_argument(
        "--sessions",
        type=_positive(int),
        default=10,
        metavar="N",
        help="number of concurrent sessions (default: %(default)s)",
    )
    demo.add_argument(
        "--seconds",
        type=_positive(float),
        default=3.0,
        metavar="S",
        help="how long to stream (default: %(default)s)",
    )
    demo.add_argument(
        "--frame-ms",
        type=_frame_ms,
        default=20,
        metavar="MS",
        help="frame period; a frame is MS x 8 bytes of 8 kHz mu-law (default: %(default)s)",
    )
    demo.add_argument(
        "--inbound",
        action="store_true",
        help=(
            "callers dial in instead: N emulated calls to the voice webhook, each taken by a "
            "worker thread with accept_session, then the same traffic; adds accept latency "
            "(dial_in to accept_session returned)"
        ),
    )
    demo.add_argument(
        "--no-progress",
        action="store_true",
        help="no live progress line on stderr (it is shown only when stderr is a terminal)",
    )
    demo.set_defaults(func=_cmd_demo)

    call = commands.add_parser(
        "call",
        help="place a call, play a WAV file into it and record the other side",
        description=(
            "Place one call, play --play (a PCM WAV file, any rate: converted to the "
            "provider's format) into it at real time in 20 ms frames, record what the other "
            "side sends to --record (a WAV file at the call's rate), and hang up once the file "
            "has played and a final mark has come back (so the tail is recorded), after "
            "--seconds, or on Ctrl-C or SIGTERM; then print a summary. With the embedded "
            "default configuration the call goes to the local emulator, which echoes what it "
            "hears. Exit status: 0 played out, 1 a problem (or the other side hung up first), "
            "2 usage, 130 Ctrl-C, 143 SIGTERM; the call is hung up and the recording written "
            "in every case."
        ),
    )
    call.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: the embedded default configuration: the emulator)",
    )
    call.add_argument(
        "--provider",
        default="twilio",
        metavar="NAME",
        help="the configured twilio or daily provider to call through (default: %(default)s)",
    )
    call.add_argument("--to", required=True, metavar="NUMBER", help="the number to call (E.164)")
    call.add_argument(
        "--from",
        dest="from_",
        metavar="NUMBER",
        help="the caller id (default: the provider's from_number; +15550199 on the emulator)",
    )
    call.add_argument("--play", metavar="IN.wav", help="the WAV file to play into the call")
    call.add_argument(
        "--record", metavar="OUT.wav", help="where to write what the other side sends"
    )
    call.add_argument(
        "--seconds",
        type=_positive(float),
        metavar="S",
        help=(
            "how long the call lasts: the file is cut off at S seconds, and recording goes on "
            "until S seconds even if the file is shorter (default: the file's length)"
        ),
    )
    call.set_defaults(func=_cmd_call)

    answer = commands.add_parser(
        "answer",
        help="answer inbound calls: play a WAV file into each, record each caller",
        description=(
            "Print the voice webhook's URL (configure it as the number's voice URL), then "
            "answer calls until --max-calls or Ctrl-C / SIGTERM: play --wav (a PCM WAV file, "
            "any rate: converted to the call's format) into each at real time in 20 ms "
            "frames, record the caller to DIR/<call sid>.wav, and hang up once the file has "
            "played and a final mark has come back (after --seconds if given; with neither, "
            "when the caller hangs up). A summary per call. --dial-in N has the embedded "
            "emulator call the webhook N times (no account needed). Exit status: 0 every call "
            "answered without error (a caller may hang up first), 1 a problem, 2 usage, 130 "
            "Ctrl-C, 143 SIGTERM; every call is hung up and its recording written in every case."
        ),
    )
    answer.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="YAML config file (default: the embedded default configuration)",
    )
    answer.add_argument(
        "--provider",
        metavar="NAME",
        help="answer only this configured provider's calls (default: any)",
    )
    answer.add_argument("--wav", metavar="FILE", help="the WAV file to play into each call")
    answer.add_argument(
        "--record", metavar="DIR", help="write each caller's audio to DIR/<call sid>.wav"
    )
    answer.add_argument(
        "--seconds",
        type=_positive(float),
        metavar="S",
        help="each call lasts S seconds: the file is cut off, or recording goes on (default: "
        "the file's length)",
    )
    answer.add_argument(
        "--max-calls",
        type=_positive(int),
        metavar="N",
        help="stop after N calls have been answered and hung up (default: until a signal)",
    )
    answer.add_argument(
        "--dial-in",
        type=_positive(int, -1),
        default=0,
        metavar="N",
        help="the embedded emulator places N calls (+15550177 -> +15550100) to this webhook "
        "(with --provider: that provider's emulator, as that provider would)",
    )
    answer.add_argument(
        "--applet-url-file",
        metavar="FILE",
        help="with an exotel --provider: write the Voicebot applet's URL (a credential) to "
        "FILE, owner-only; it is printed masked",
    )
    answer.set_defaults(func=_cmd_answer)

    gateway = commands.add_parser(
        "gateway",
        help="run the media gateway standalone",
        description=(
            "Run the media gateway configured under `gateway:` until Ctrl-C or SIGTERM. "
            "gateway.secret must be set: the services that dial this gateway share it."
        ),
    )
    gateway.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    gateway.add_argument(
        "--drain-timeout",
        type=float,
        metavar="S",
        help=(
            "on the first Ctrl-C or SIGTERM, take no new call and wait up to S seconds for "
            "the calls held to end (a second signal stops at once) (default: 30 with a "
            "cluster section, else 0)"
        ),
    )
    gateway.set_defaults(func=_cmd_gateway)

    _add_cluster_commands(commands)

    emulator = commands.add_parser(
        "emulator",
        help="run the local Twilio emulator standalone",
        description=(
            "Run the Twilio emulator configured under `emulator:` until Ctrl-C or SIGTERM. It "
            "accepts the account of the config's twilio provider, or a made-up one it prints."
        ),
    )
    emulator.add_argument("-c", "--config", metavar="FILE", help="YAML config file")
    emulator.add_argument(
        "--dial-in",
        metavar="N",
        type=int,
        default=0,
        help="once ready, place N inbound calls to emulator.voice_url (+15550199 -> +15550100)",
    )
    emulator.set_defaults(func=_cmd_emulator)

    check = commands.add_parser(
        "check",
        help="validate a config file and print it with secrets masked",
        description=(
            "Load and validate a YAML config file. On success print 'OK: FILE' and the config "
            "as JSON with every secret masked; on error print the problem and exit 2."
        ),
    )
    check.add_argument("-c", "--config", metavar="FILE", required=True, help="YAML config file")
    check.set_defaults(func=_cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``transport-actors`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    args = _build_parser().parse_args(argv)
    stop_logging = _start_logging(args.log_level, args.log_format)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TransportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stop_logging()
