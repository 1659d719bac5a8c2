"""The pacer of outbound audio (Vonage's): pure, so driven here with made-up times."""

from __future__ import annotations

import timeit

import pytest

from actors.codecs import Frame
from actors.codecs.pacing import Pacer
from actors.codecs.vonage import VonageCodec, VonageSocket
from actors.messages import Binary, Clear, Mark

FRAME_S = 0.02
NOTIFY = '{"action":"notify","payload":{"name":"m"}}'


def audio(n: int, start: int = 0) -> list[Frame]:
    return [bytes([(start + i) % 256, 0]) * 320 for i in range(n)]


def test_audio_goes_at_most_lead_frames_ahead_then_at_real_time() -> None:
    pacer = Pacer(FRAME_S, lead_frames=50)
    frames = audio(1500)
    pacer.push(frames)
    sent = pacer.release(100.0)
    assert sent == frames[:50] and pacer.backlog == 1450
    assert pacer.ahead_s(100.0) == pytest.approx(1.0)
    assert pacer.release(100.0) == []  # no time has passed: nothing more
    sent += pacer.release(100.1)  # a 100 ms tick: five more frames played, five more go
    assert len(sent) == 55
    now = 100.1
    while pacer.backlog:
        now += 0.1
        sent += pacer.release(now)
    assert sent == frames  # every frame, in order, none twice
    # The last frame went 1 s before the end of the 30 s: ~29 s after the first.
    assert now - 100.0 == pytest.approx(29.0, abs=0.11)


def test_a_late_tick_catches_up_at_most_to_the_lead_never_beyond() -> None:
    pacer = Pacer(FRAME_S, lead_frames=50)
    pacer.push(audio(500))
    assert len(pacer.release(0.0)) == 50
    # 3 s without a tick (a starved loop): the far end ran dry; the lead is refilled, no more.
    assert len(pacer.release(3.0)) == 50
    assert pacer.ahead_s(3.0) == pytest.approx(1.0)


def test_a_real_time_writer_is_never_held() -> None:
    pacer = Pacer(FRAME_S, lead_frames=5)
    for i in range(200):  # one frame per 20 ms, as the call command writes
        pacer.push(audio(1, i))
        assert len(pacer.release(i * FRAME_S)) == 1
    assert pacer.backlog == 0


def test_a_notify_waits_behind_the_audio_before_it() -> None:
    pacer = Pacer(FRAME_S, lead_frames=2)
    first = audio(3)
    pacer.push([*first, NOTIFY, *audio(1, 9)])
    assert pacer.release(0.0) == first[:2]
    # The third frame goes with the notify right behind it; the frame after waits its turn.
    assert pacer.release(FRAME_S) == [first[2], NOTIFY]
    assert pacer.backlog == 1 and pacer.backlog_audio == 1


def test_clear_drops_the_audio_and_keeps_the_notifies() -> None:
    pacer = Pacer(FRAME_S, lead_frames=2)
    pacer.push([*audio(10), NOTIFY, *audio(10)])
    pacer.release(0.0)
    kept, dropped = pacer.clear()
    assert (kept, dropped, pacer.backlog) == ([NOTIFY], 18, 0)
    # The far end's buffer was cleared too: the next audio goes at once, the whole lead.
    pacer.push(audio(3))
    assert len(pacer.release(0.001)) == 2


def test_drop_oldest_drops_audio_only_and_counts_it() -> None:
    pacer = Pacer(FRAME_S, lead_frames=1)
    frames = audio(4)
    pacer.push([frames[0], NOTIFY, *frames[1:]])
    assert pacer.drop_oldest(2) == 2 and pacer.dropped == 2
    assert pacer.release(0.0) == [NOTIFY, frames[2]]
    assert pacer.drop_oldest(5) == 1 and pacer.dropped == 3 and pacer.backlog == 0


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="lead_frames"):
        Pacer(FRAME_S, 0)
    with pytest.raises(ValueError, match="frame_s"):
        Pacer(0.0, 5)
    with pytest.raises(ValueError, match="lead_frames"):
        VonageCodec(lead_frames=1024)  # Vonage's whole buffer is no lead


def paced_codec(lead_frames: int) -> VonageCodec:
    codec = VonageCodec(lead_frames=lead_frames)
    codec.decode(VonageSocket(16000).connected())
    return codec


def test_the_paced_vonage_codec_returns_only_a_clear_and_the_marks_it_overtook() -> None:
    codec = paced_codec(2)
    pacer = codec.pacer
    assert pacer is not None
    frames = audio(5)
    for frame in frames:
        assert codec.encode(Binary(frame)) == []  # all of it waits in the pacer
    assert codec.encode(Mark("m")) == []
    assert pacer.release(0.0) == frames[:2]
    out = codec.encode(Clear())
    assert out == ['{"action":"clear"}', '{"action":"notify","payload":{"name":"m"}}']
    assert (codec.cleared_frames, pacer.backlog) == (3, 0)


def test_pacer_overhead_per_frame_is_small() -> None:
    """µs of CPU the pacer adds per 20 ms frame: a push and a release per write (a writer at
    real time), and a frame released from a backlog on a tick."""
    frames = audio(1)
    steady = Pacer(FRAME_S, lead_frames=50)
    clock = iter(range(10**7))

    def one_write() -> None:
        steady.push(frames)
        steady.release(next(clock) * FRAME_S)

    per_write = timeit.timeit(one_write, number=20_000) / 20_000 * 1e6
    backlog = Pacer(FRAME_S, lead_frames=50)
    backlog.push(audio(20_000))
    times = iter(range(10**7))
    per_tick = timeit.timeit(lambda: backlog.release(next(times) * 0.1), number=3_000) / 3_000
    per_backlog_frame = per_tick / 5 * 1e6  # a 100 ms tick releases five frames
    print(
        f"\npacer: {per_write:.2f} us per frame written at real time, "
        f"{per_backlog_frame:.2f} us per frame released from a backlog"
    )
    assert per_write < 100 and per_backlog_frame < 100  # generous: a shared 2-core machine
