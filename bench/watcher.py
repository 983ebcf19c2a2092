"""Index the fake Slack's recorded calls for the people waiting on them, from one thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from bench.config import POLL_INTERVAL
from tests.fakes.slack_api import FakeSlack, SlackCall


class SlackWatcher:
    """One thread indexes FakeSlack's recorded calls for the people waiting on them.

    Fifty people each calling ``FakeSlack.wait_for`` would rescan every call, under the fake's lock, on
    every change; that would slow the fake (and so the app) down. Polling ``calls()`` from one thread and
    waking only the person a call is for keeps the fake's overhead out of the figures.
    """

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self._cond = threading.Condition()
        self._seen = 0
        self._unanswered: list[SlackCall] = []
        self.opened: dict[str, SlackCall] = {}  # trigger_id -> answered views.open
        self.updates: dict[str, list[SlackCall]] = {}  # view_id -> answered views.update
        self.posts: dict[str, list[SlackCall]] = {}  # response_url -> POSTs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watcher", daemon=True)

    def start(self) -> SlackWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            calls = self.slack.calls()
            fresh, self._seen = calls[self._seen :], len(calls)
            waiting = self._unanswered + [c for c in fresh if c.method in ("views.open", "views.update")]
            answered = [c for c in waiting if c.status is not None]
            self._unanswered = [c for c in waiting if c.status is None]
            posts = [c for c in fresh if c.method == "response_url"]
            if not answered and not posts:
                continue
            with self._cond:
                for call in answered:
                    if call.method == "views.open":
                        self.opened[str(call.args.get("trigger_id"))] = call
                    else:
                        self.updates.setdefault(str(call.args.get("view_id")), []).append(call)
                for call in posts:
                    self.posts.setdefault(str(call.args.get("_url")), []).append(call)
                self._cond.notify_all()

    def _wait(self, found: Callable[[], Any], timeout: float) -> Any:
        with self._cond:
            return self._cond.wait_for(found, timeout=timeout)

    def wait_open(self, trigger_id: str, timeout: float) -> SlackCall | None:
        return self._wait(lambda: self.opened.get(trigger_id), timeout)

    def wait_update(
        self, view_id: str, match: Callable[[SlackCall], bool], timeout: float
    ) -> SlackCall | None:
        return self._wait(lambda: next((c for c in self.updates.get(view_id, []) if match(c)), None), timeout)

    def wait_post(self, url: str, timeout: float) -> SlackCall | None:
        return self._wait(lambda: (self.posts.get(url) or [None])[0], timeout)

    def posts_to(self, url: str) -> list[SlackCall]:
        with self._cond:
            return list(self.posts.get(url, []))
