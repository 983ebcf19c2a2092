"""Thread-safe caching for lookups that must answer inside Slack's 3 s trigger window.

`SingleFlight` makes concurrent misses for one key share one call; `TTLCache` uses it, and can serve a
value past its time to live (for a bounded while) when refreshing it fails, or forget everything at once
(`clear`) when the caller knows the values have changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")

log = logging.getLogger(__name__)


@dataclass
class _Flight(Generic[V]):
    done: threading.Event = field(default_factory=threading.Event)
    value: V | None = None
    error: BaseException | None = None
    followers: int = 0


class SingleFlight(Generic[V]):
    """Concurrent calls for one key share one in-flight load: the first caller runs it, the others wait
    for its result or its exception. Nothing is remembered once the load ends; caching is the caller's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[V]] = {}

    def followers(self, key: Hashable) -> int:
        """How many callers are waiting on the load in flight for `key` (0 when none is)."""
        with self._lock:
            flight = self._flights.get(key)
            return flight.followers if flight is not None else 0

    def do(self, key: Hashable, load: Callable[[], V]) -> V:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                flight.followers += 1
        if not leader:
            # Bounded by the leader's own call, which has its own timeout.
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]
        try:
            flight.value = load()
            return flight.value
        except BaseException as error:
            flight.error = error
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


class TTLCache(Generic[V]):
    """Values live `ttl` seconds. With `stale_for`, a value whose refresh raised one of `stale_on` is
    served for up to `stale_for` more seconds instead of the error: a brief Slack outage or rate limit
    then does not refuse everyone. `ttl` 0 disables caching altogether."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        stale_for: float = 0.0,
        stale_on: tuple[type[Exception], ...] = (),
    ):
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._stale_for = stale_for if stale_on else 0.0
        self._stale_on = stale_on
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._lock = threading.Lock()
        self._flights: SingleFlight[V] = SingleFlight()
        # Bumped by clear(): a load begun before it neither stores its answer nor serves later callers.
        self._generation = 0

    def _lookup(self, key: Hashable, max_age: float) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored_at, value = entry
            age = self._clock() - stored_at
            if age > self._ttl + self._stale_for:
                del self._entries[key]
                return None
            return value if age <= max_age else None

    def get(self, key: Hashable) -> V | None:
        return self._lookup(key, self._ttl)

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Forget every value. A load already in flight finishes for those waiting on it, but is neither
        stored nor joined by anyone asking after this: they load afresh."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def _store(self, key: Hashable, value: V) -> None:
        """Under the lock."""
        if self._ttl > 0:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # crude, but bounded; entries are cheap to refetch
            self._entries[key] = (self._clock(), value)

    def _store_unless_cleared(self, key: Hashable, value: V, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._store(key, value)

    def get_or_load(self, key: Hashable, load: Callable[[], V]) -> V:
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            generation = self._generation

        def load_once() -> V:
            fresh = self.get(key)  # a flight that ended just before this one began may have stored it
            if fresh is not None:
                return fresh
            try:
                fresh = load()
            except self._stale_on as error:
                stale = self._lookup(key, self._ttl + self._stale_for)
                if stale is None:
                    raise
                log.warning(
                    "Serving a cached value for %s past its lifetime: refreshing failed (%s)", key, error
                )
                return stale
            self._store_unless_cleared(key, fresh, generation)
            return fresh

        return self._flights.do((generation, key), load_once)
