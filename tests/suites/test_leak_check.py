"""The leak check can fail: a test that leaves a thread, a socket or an actor behind errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).resolve().parents[1] / "conftest.py").read_text()


@pytest.mark.timeout(60)
def test_leaks_are_reported(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST.replace("LEAK_GRACE_S = 3.0", "LEAK_GRACE_S = 0.2"))
    pytester.makepyfile(
        test_leaky="""
        import socket, threading, pykka

        hold = threading.Event()
        kept = []

        def test_thread():
            t = threading.Thread(target=hold.wait, name="leaky-thread", daemon=True)
            t.start()
            kept.append(t)

        def test_socket():
            kept.append(socket.socket())

        def test_actor():
            kept.append(pykka.ThreadingActor.start())

        def test_clean():
            pass

        def test_zz_release():
            hold.set()
            for item in kept:
                if isinstance(item, threading.Thread):
                    item.join(5)
                elif isinstance(item, socket.socket):
                    item.close()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5, errors=3)
    output = result.stdout.str()
    assert "Failed: threads left running: ['leaky-thread']" in output
    assert "Failed: 1 sockets left open" in output
    assert "actors left running: ['ThreadingActor (urn:uuid:" in output
