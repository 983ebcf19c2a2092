"""Background work that must outlive the Slack request that started it.

Creations run here, not on Bolt's small listener pool, so that acknowledgements never wait behind a slow
Mixpanel. Shutdown stops new work, cancels queued work that has not started (telling whoever waits for
it), and waits, within a grace period, for running creations to deliver their token or clean up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

log = logging.getLogger(__name__)


class ShuttingDown(Exception):
    pass


class ListenerPool(ThreadPoolExecutor):
    """Bolt's listener threads, counted: so that a caller can wait until no listener is still running
    after its ack (Bolt acks first, then runs the rest of the listener on this pool)."""

    def __init__(self, workers: int):
        super().__init__(max_workers=workers, thread_name_prefix="listener")
        self._running = 0
        self._idle = threading.Condition()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._idle:
            self._running += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished()
            raise
        future.add_done_callback(lambda _: self._finished())
        return future

    def _finished(self) -> None:
        with self._idle:
            self._running -= 1
            if not self._running:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout=timeout)


class JobRunner:
    def __init__(self, workers: int):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="creation")
        self._in_flight: set[Future] = set()
        self._on_cancel: dict[Future, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._closing = threading.Event()

    def submit(
        self, name: str, work: Callable[[], None], *, on_cancel: Callable[[], None] | None = None
    ) -> Future:
        """`on_cancel` runs instead of `work` if shutdown begins before `work` has started."""

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("Background job %s failed", name)

        with self._lock:
            if self._closed:
                raise ShuttingDown(name)
            future = self._executor.submit(run)
            self._in_flight.add(future)
            if on_cancel is not None:
                self._on_cancel[future] = on_cancel
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        with self._lock:
            self._in_flight.discard(future)
            self._on_cancel.pop(future, None)
            if not self._in_flight:
                self._idle.notify_all()

    def pause(self, seconds: float) -> bool:
        """Wait, unless shutdown begins first: then return False at once."""
        return not self._closing.wait(seconds)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: not self._in_flight, timeout=timeout)

    def shutdown(self, grace: float) -> bool:
        """Refuse new work, then wait up to `grace` seconds. Returns True if everything finished."""
        with self._lock:
            self._closed = True
            cancellable = list(self._on_cancel.items())
        self._closing.set()
        for future, on_cancel in cancellable:
            if future.cancel():  # still queued: it never started, so nothing was done on its behalf
                try:
                    on_cancel()
                except Exception:
                    log.exception("Telling a cancelled job's requester failed")
        pending = self.in_flight()
        if pending:
            log.info("Waiting up to %.0fs for %d in-flight creation(s)", grace, pending)
        finished = self.wait_idle(grace)
        if not finished:
            log.error("Shutdown grace period ended with %d creation(s) still running", self.in_flight())
        self._executor.shutdown(wait=False, cancel_futures=True)
        return finished


# A periodic job's lease outlives one interval by this much, so a slow pass keeps it; a dead instance's
# lease lapses one interval later and another instance takes over.
LEASE_MARGIN = timedelta(seconds=60)


def lease_for(interval: float) -> timedelta:
    return timedelta(seconds=interval) + LEASE_MARGIN


def run_every(interval: float, stopping: threading.Event, run: Callable[[], object], *, name: str) -> None:
    """Call `run` every `interval` seconds on a daemon thread until `stopping` is set. The first call comes
    one interval after start: a fresh start must not hold up its own warm-up with a list of every account."""

    def loop() -> None:
        while not stopping.wait(interval):
            try:
                run()
            except Exception:
                log.exception("The periodic %s job failed", name)

    threading.Thread(target=loop, name=name, daemon=True).start()
