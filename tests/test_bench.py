"""The benchmark's own instruments (python -m bench): fast checks, no app process, no timing assertions."""

from __future__ import annotations

import contextlib
import os
import threading

import pytest
import requests

from bench.cli import parse_levels
from bench.config import OURS, SOCKET
from bench.fakes import TimedMixpanel
from bench.figures import percentile
from bench.report import render
from bench.results import Flow, ServerResult
from bench.targets import targets


def test_percentiles_count_failures_as_infinitely_slow():
    assert percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2
    assert percentile([0.1, None], 99) == float("inf")
    assert percentile([], 50) is None


def test_levels_are_validated():
    assert parse_levels("50,1,10,10") == [1, 10, 50]
    with pytest.raises(Exception, match="between 1 and 500"):
        parse_levels("0,5")


def test_the_timed_mixpanel_counts_concurrent_me_calls_per_calling_process():
    def call(url: str, auth: tuple[str, str]) -> None:
        with contextlib.suppress(requests.RequestException):  # stopping the fake drops waiting calls
            requests.get(url, auth=auth, timeout=10)

    with TimedMixpanel() as mixpanel:
        mixpanel.pids = lambda: [os.getpid()]
        mixpanel.latency = {"me": 5.0}  # held until the fake stops, so the three calls overlap
        args = (f"{mixpanel.base_url}/me", (mixpanel.username, mixpanel.secret))
        threads = [threading.Thread(target=call, args=args) for _ in range(3)]
        for thread in threads:
            thread.start()
        mixpanel.wait_for("me", count=3, timeout=10)
    for thread in threads:
        thread.join()
    assert mixpanel.max_in_flight("me") == {os.getpid(): 3}
    assert all(call.ended is not None for call in mixpanel.timed)


def _server(kind, ack: float | None) -> ServerResult:
    result = ServerResult(kind=kind, mixpanel_latency=1.5)
    for index in range(4):
        flow = Flow(level=2, round=1, user_id=f"U{index}", username=f"u{index}")
        flow.command_ack, flow.submit_ack, flow.submitted = ack, 0.05, True
        flow.token_latency = 1.6
        result.flows.append(flow)
    result.counts = dict.fromkeys(
        ("flows", "submitted", "creates", "own_token_delivered", "wrong_token", "leaked", "failed_flows"), 0
    )
    return result


def test_the_report_judges_each_of_our_servers(tmp_path):
    fast, failing = _server(OURS, 0.02), _server(SOCKET, None)
    verdicts = {t.name: t.passed for t in targets([fast, failing], None, [2], [])}
    ack_targets = {name.split(":")[0]: ok for name, ok in verdicts.items() if "p99 ack" in name}
    assert ack_targets == {"http": True, "socket": False}
    table = render(
        {"cpu": "x", "nproc": 2, "python": "3", "kernel": "k"}, [fast, failing], [], [2], {2: 1}, 1.0
    )
    assert "failed" in table and "http p99" in table and "socket p99" in table

    from bench.chart import draw

    chart = draw([fast, failing], [2], tmp_path / "chart.svg", "test")
    assert chart.read_text().lstrip().startswith("<?xml")
