"""Settings parsing: pure, no network."""

from __future__ import annotations

import pytest
import requests

from bot.mixpanel.client import MAX_REDIRECTS, READ_ATTEMPTS
from bot.runtime import mixpanel_client
from bot.settings import Region, Settings, SettingsError, load_settings

REQUIRED = {
    "slack_bot_token": "xoxb-1",
    "slack_signing_secret": "s",
    "mixpanel_service_account_username": "u",
    "mixpanel_service_account_secret": "p",
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/x", "postgresql+psycopg://u:p@db:5432/x"),
        ("postgresql://u:p@db/x", "postgresql+psycopg://u:p@db/x"),
        ("postgresql+psycopg://u:p@db/x", "postgresql+psycopg://u:p@db/x"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_urls_name_the_driver(given, expected):
    assert Settings(_env_file=None, database_url=given, **REQUIRED).database_url == expected


@pytest.mark.parametrize(
    ("region", "host"),
    [
        (Region.US, "https://mixpanel.com"),
        (Region.EU, "https://eu.mixpanel.com"),
        (Region.IN, "https://in.mixpanel.com"),
    ],
)
def test_regions_choose_the_app_api_host(region, host):
    settings = Settings(_env_file=None, mixpanel_region=region, **REQUIRED)
    assert settings.mixpanel_app_api_base == host + "/api/app"
    override = Settings(
        _env_file=None, mixpanel_region=region, mixpanel_api_url="http://127.0.0.1:1/api/app/", **REQUIRED
    )
    assert override.mixpanel_app_api_base == "http://127.0.0.1:1/api/app"
    assert override.mixpanel_public_host == host  # the curl example still names the real host


def test_secrets_stay_hidden_in_reprs():
    settings = Settings(_env_file=None, **REQUIRED)
    assert "xoxb-1" not in repr(settings) and "xoxb-1" not in str(settings.model_dump())


def test_every_problem_is_reported_at_once(monkeypatch):
    for name in (
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME",
        "MIXPANEL_SERVICE_ACCOUNT_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir("/")
    with pytest.raises(SettingsError) as raised:
        load_settings(port=0, slack_app_token="nope")
    problems = "\n".join(raised.value.problems)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "PORT", "SLACK_APP_TOKEN"):
        assert name in problems


@pytest.mark.parametrize(
    ("slack_api_url", "response_url", "trusted"),
    [
        (None, "https://hooks.slack.com/commands/T1/1/abc", True),
        (None, "http://hooks.slack.com/commands/T1/1/abc", False),
        (None, "https://evil.example/commands", False),
        (None, "http://127.0.0.1:9999/response/x", False),
        ("http://127.0.0.1:8000/api/", "http://127.0.0.1:9999/response/x", True),
        ("http://127.0.0.1:8000/api/", "http://localhost:9999/response/x", True),
        ("http://127.0.0.1:8000/api/", "https://evil.example/response/x", False),
        ("https://slack-proxy.internal/api/", "https://slack-proxy.internal/hooks/x", True),
        ("https://slack-proxy.internal/api/", "http://127.0.0.1:9/x", False),
    ],
)
def test_tokens_are_posted_only_to_trusted_response_urls(slack_api_url, response_url, trusted):
    from bot.slack.delivery import SlackDelivery, response_url_hosts

    delivery = SlackDelivery(None, timeout=1, response_url_hosts=response_url_hosts(slack_api_url))
    assert delivery._trusted_response_url(response_url) is trusted


def test_the_default_stale_request_seconds_outlasts_the_default_creation():
    settings = Settings(_env_file=None, **REQUIRED)
    assert settings.stale_request_seconds > settings.longest_silent_creation_seconds()


@pytest.mark.parametrize(
    "overrides",
    [
        {"stale_request_seconds": 60},
        {"mixpanel_reconcile_delays": [0, 300, 300]},
        {"mixpanel_read_timeout": 600, "stale_request_seconds": 600},
        {"slack_timeout": 200},
    ],
)
def test_a_stale_request_seconds_a_creation_could_outlast_names_itself(overrides):
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, **REQUIRED, **overrides)
    [problem] = raised.value.problems
    assert problem.startswith("STALE_REQUEST_SECONDS: must exceed ")
    longest = Settings.model_construct(**{**Settings(_env_file=None, **REQUIRED).model_dump(), **overrides})
    assert f"exceed {longest.longest_silent_creation_seconds():.0f}," in problem


# Quick Mixpanel calls: delivery (four Slack calls and their 429 waits) is the longest silent stretch.
QUICK_MIXPANEL = {
    "mixpanel_connect_timeout": 1,
    "mixpanel_read_timeout": 5,
    "mixpanel_max_rate_limit_wait": 1,
    "mixpanel_reconcile_delays": [0],
    "slack_timeout": 10,
}


def test_stale_request_seconds_counts_slacks_rate_limit_waits():
    # 4 x 10 s of Slack calls + 30 s margin = 70 s ignored the 30 s delivery may wait on HTTP 429s.
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, **REQUIRED, **QUICK_MIXPANEL, stale_request_seconds=75)
    [problem] = raised.value.problems
    assert problem.startswith("STALE_REQUEST_SECONDS: must exceed 100,")
    settings = load_settings(_env_file=None, **REQUIRED, **QUICK_MIXPANEL, stale_request_seconds=101)
    assert settings.stale_request_seconds == 101


def test_stale_request_seconds_just_above_the_longest_creation_is_accepted():
    shortest = Settings(_env_file=None, **REQUIRED).longest_silent_creation_seconds()
    settings = load_settings(_env_file=None, **REQUIRED, stale_request_seconds=int(shortest) + 1)
    assert settings.stale_request_seconds == int(shortest) + 1


@pytest.mark.parametrize("hours", [-1, 24 * 15])
def test_uncertain_recheck_hours_are_bounded(hours):
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, **REQUIRED, uncertain_recheck_hours=hours)
    assert raised.value.problems[0].startswith("UNCERTAIN_RECHECK_HOURS:")


def test_socket_mode_concurrency_is_read_and_bounded(monkeypatch):
    from bot.runtime import LISTENER_THREADS

    # More envelopes in flight than listener threads could not be acked any sooner.
    assert 1 < Settings(_env_file=None, **REQUIRED).socket_mode_concurrency <= LISTENER_THREADS
    monkeypatch.setenv("SOCKET_MODE_CONCURRENCY", "7")
    assert Settings(_env_file=None, **REQUIRED).socket_mode_concurrency == 7
    monkeypatch.setenv("SOCKET_MODE_CONCURRENCY", "0")
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None, **REQUIRED)
    assert [p for p in error.value.problems if p.startswith("SOCKET_MODE_CONCURRENCY:")]


def test_missing_required_settings_are_named_alone(monkeypatch):
    """A default that depends on another setting must not add a problem of its own when others fail."""
    for name in REQUIRED:
        monkeypatch.delenv(name.upper(), raising=False)
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None)
    problems = error.value.problems
    assert all(problem.endswith("missing (required)") for problem in problems), problems


@pytest.mark.parametrize(("value", "accepted"), [("1", True), ("10", True), ("0", False), ("11", False)])
def test_socket_mode_processes_are_bounded_by_slacks_ten_connections(monkeypatch, value, accepted):
    monkeypatch.setenv("SOCKET_MODE_PROCESSES", value)
    if accepted:
        assert load_settings(_env_file=None, **REQUIRED).socket_mode_processes == int(value)
        return
    with pytest.raises(SettingsError) as error:
        load_settings(_env_file=None, **REQUIRED)
    assert [p for p in error.value.problems if p.startswith("SOCKET_MODE_PROCESSES:")]


@pytest.mark.parametrize(("web_concurrency", "expected"), [(None, None), ("3", 3), ("16", 10)])
def test_socket_mode_processes_default_to_web_concurrency(monkeypatch, web_concurrency, expected):
    monkeypatch.delenv("SOCKET_MODE_PROCESSES", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    if web_concurrency is not None:
        monkeypatch.setenv("WEB_CONCURRENCY", web_concurrency)
    settings = Settings(_env_file=None, **REQUIRED)
    assert settings.socket_mode_processes == (expected or settings.web_concurrency)
    assert 1 <= settings.socket_mode_processes <= 10


class _SlowestMixpanel:
    """A transport at Mixpanel's slowest within the timeouts, on a virtual clock: every request takes the
    connect and read timeouts in full; each try follows every redirect the client allows, then answers 429
    asking for an equal share of the rate-limit wait, and the last try succeeds."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.elapsed = 0.0
        self.hops = 0

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds

    def request(self, method, url, *, timeout, **_kwargs) -> requests.Response:
        assert timeout == (self.settings.mixpanel_connect_timeout, self.settings.mixpanel_read_timeout)
        self.elapsed += sum(timeout)
        self.hops += 1
        response = requests.Response()
        response.url = url
        hop = (self.hops - 1) % (MAX_REDIRECTS + 1)
        if hop < MAX_REDIRECTS:
            response.status_code, response._content = 307, b""
            response.headers["Location"] = url + "/"
        elif self.hops < READ_ATTEMPTS * (MAX_REDIRECTS + 1):
            share = self.settings.mixpanel_max_rate_limit_wait / (READ_ATTEMPTS - 1)
            response.status_code, response._content = 429, b'{"status": "error", "error": "slow down"}'
            response.headers["Retry-After"] = str(int(share))
        else:
            response.status_code, response._content = 200, b'{"status": "ok"}'
        return response


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the defaults: 4 tries x 4 hops x 33.05 s + 30 s of waits, far beyond the old 2 minutes
        {"mixpanel_connect_timeout": 1, "mixpanel_read_timeout": 5, "mixpanel_max_rate_limit_wait": 6},
        {"mixpanel_read_timeout": 120, "mixpanel_max_rate_limit_wait": 60, "stale_request_seconds": 1200},
    ],
)
def test_the_deletion_lease_outlasts_the_slowest_delete_these_settings_allow(overrides):
    settings = load_settings(_env_file=None, **REQUIRED, **overrides)
    slowest = _SlowestMixpanel(settings)
    client = mixpanel_client(
        settings, sleep=slowest.sleep, jitter=lambda: 0.999
    )  # as bot/runtime.py wires it
    client._session.request = slowest.request

    assert client.delete_if_present(1234, 7001) is True

    assert slowest.hops == READ_ATTEMPTS * (MAX_REDIRECTS + 1)  # it did take every try and every hop
    assert settings.deletion_lease_seconds() >= slowest.elapsed
