"""The listener pool counts what still runs after an ack, so that waiting for "idle" covers a listener
that has acknowledged Slack but not yet made its calls (the race that let a test read another click's
modal as its own)."""

from __future__ import annotations

import threading

from bot.jobs import ListenerPool


def test_wait_idle_waits_for_a_listener_still_running_after_submit():
    pool = ListenerPool(2)
    release = threading.Event()
    finished = []
    pool.submit(lambda: (release.wait(5), finished.append(True)))

    assert pool.wait_idle(0.05) is False  # still running
    release.set()
    assert pool.wait_idle(5) is True and finished == [True]
    pool.shutdown()


def test_a_failing_listener_still_counts_as_finished():
    pool = ListenerPool(1)

    def fail() -> None:
        raise RuntimeError("boom")

    future = pool.submit(fail)
    assert pool.wait_idle(5) and isinstance(future.exception(), RuntimeError)
    pool.shutdown()
