#!/usr/bin/env python3
"""A Pipecat echo bot for Twilio Media Streams: the benchmark's Pipecat row.

Runs INSIDE the Pipecat venv that ``scripts/bench.py --pipecat`` creates (``.cache/pipecat-venv``),
as a process of its own; it is not part of the project and the project's venv cannot import it.

Built the way Pipecat's Twilio examples build a bot, less the AI services: a FastAPI app whose
WebSocket endpoint ``/ws`` reads Twilio's ``connected`` and ``start`` messages
(``parse_telephony_websocket``), makes a ``TwilioFrameSerializer`` for the stream (auto hang-up
off: there are no Twilio credentials here), a ``FastAPIWebsocketTransport`` (audio in and out,
no VAD analyzer) and runs the pipeline

    transport.input() -> Echo -> transport.output()

where ``Echo`` turns every ``InputAudioRawFrame`` into an ``OutputAudioRawFrame`` with the same
PCM bytes. Input and output are 8 kHz, Twilio's rate, so no resampler does any work: the
serializer only converts mu-law to 16-bit PCM and back.

Choices that are not Pipecat's defaults, each for the benchmark's sake:
- ``audio_out_10ms_chunks=2`` (``--chunk-ms 20``): the output transport sends audio in chunks of
  this size; Pipecat's default is 40 ms, which would hold every other 20 ms frame back until its
  pair arrives (20 ms of latency by construction). 20 ms makes one frame in one frame out.
- RTVI off (``--rtvi`` turns it on): the pipeline worker otherwise adds an RTVI processor and an
  observer that sees every frame; a phone call has no RTVI client.
- loguru at WARNING (``--log-level``): Pipecat logs at DEBUG by default.

One uvicorn worker on one event loop (uvloop when installed, as uvicorn picks by default);
permessage-deflate is whatever the client offers (the benchmark's peer, like Twilio, offers
none). ``GET /active`` answers the number of pipelines running, so that the benchmark can wait
for one step's calls to be gone before the next. Prints ``pipecat-echo ready port=N pid=P`` on
stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)
from pipecat.workers.runner import WorkerRunner

SAMPLE_RATE = 8000


class Echo(FrameProcessor):
    """Sends back what the caller says: input audio becomes output audio, byte for byte."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self.push_frame(
                OutputAudioRawFrame(
                    audio=frame.audio,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                )
            )
        else:
            await self.push_frame(frame, direction)


def make_app(chunk_ms: int, rtvi: bool) -> FastAPI:
    app = FastAPI()
    active = {"pipelines": 0}

    @app.get("/active")
    async def count() -> dict[str, int]:
        return active

    @app.websocket("/ws")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call = await parse_telephony_websocket(websocket)
        serializer = TwilioFrameSerializer(
            stream_sid=call["stream_id"],
            call_sid=call["call_id"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket=websocket,
            params=FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                audio_out_10ms_chunks=chunk_ms // 10,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        worker = PipelineWorker(
            Pipeline([transport.input(), Echo(), transport.output()]),
            params=PipelineParams(
                audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
            ),
            enable_rtvi=rtvi,
            idle_timeout_secs=None,
        )

        @transport.event_handler("on_client_disconnected")
        async def on_client_disconnected(_transport: Any, _websocket: WebSocket) -> None:
            await worker.cancel()

        # One runner per call, as the examples' run_bot does; it ends when the call's worker does.
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        active["pipelines"] += 1
        try:
            await runner.run()
        finally:
            active["pipelines"] -= 1

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--chunk-ms", type=int, default=20, choices=(10, 20, 40, 60, 80))
    parser.add_argument("--rtvi", action="store_true", help="keep the worker's RTVI processor")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level)
    # Bound here, not by uvicorn, so that port 0 works and the ready line names the real port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    config = uvicorn.Config(
        make_app(args.chunk_ms, args.rtvi),
        log_level="warning",
        workers=1,
        backlog=1024,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        print(f"pipecat-echo ready port={sock.getsockname()[1]} pid={os.getpid()}", flush=True)
        await task

    # uvicorn's own choice of loop (uvloop when installed), as ``uvicorn.run`` would make.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
