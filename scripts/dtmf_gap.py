"""How long the caller's audio stops around ``send_dtmf`` on a Twilio session (issue 13).

Through the embedded emulator (``media: tone``: it sends a frame every 20 ms) and gateway:
for each of ``--calls`` calls, read half a second of audio, ``send_dtmf(--digits)``, and time
the gap at the reader between the last audio of the old stream and the first of the new one
(the call update's stop, the keys playing, the new stream dialled, paired and started, the
session's hop redialled). The emulator plays each key in 50 ms (``w`` 0.5 s, ``W`` 1 s)::

    .venv/bin/python scripts/dtmf_gap.py --calls 10 --digits 1
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from actors import Audio, Started, Stopped, TransportService, default_config
from actors.config import EmulatorConfig


def gap_ms(service: TransportService, digits: str) -> float:
    """One call: the reader's gap in audio around ``send_dtmf(digits)``, in ms."""
    info = service.create_session(provider="twilio", to="+15550100", from_="+15550199")
    sid = info.session_id
    heard, last = 0, time.monotonic()
    while heard < 25:
        heard += isinstance(service.read_websocket_message(sid, timeout=5), Audio)
        last = time.monotonic()
    service.send_dtmf(sid, digits)
    phase = "old"
    while True:
        message = service.read_websocket_message(sid, timeout=10)
        now = time.monotonic()
        if isinstance(message, Stopped):
            phase = "between"
        elif isinstance(message, Started):
            phase = "new"
        elif isinstance(message, Audio) and phase == "old":
            last = now
        elif isinstance(message, Audio) and phase == "new":
            service.end_session(sid)
            return (now - last) * 1000
        elif message is None:
            raise RuntimeError("the session ended")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--digits", default="1")
    args = parser.parse_args()
    config = dataclasses.replace(default_config(), emulator=EmulatorConfig(media="tone"))
    with TransportService(config) as service:
        gaps = [gap_ms(service, args.digits) for _ in range(args.calls)]
    print(
        f"audio gap around send_dtmf({args.digits!r}): p50 {statistics.median(gaps):.0f} ms, "
        f"max {max(gaps):.0f} ms over {len(gaps)} calls"
    )


if __name__ == "__main__":
    main()
