"""The harness: the real Bolt app behind waitress, on loopback, against fake Slack and Mixpanel servers."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import inspect, select

from app import create_app
from bot.db.store import Store
from bot.policy.file import Policy
from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.web.server import SLACK_EVENTS_PATH
from tests.clock import ALICE_TZ
from tests.fakes.mixpanel import FakeMixpanel
from tests.fakes.slack_api import FakeSlack
from tests.postgres import fresh_postgres_url, postgres_url  # noqa: F401
from tests.server import create_http_server, stop_http_server
from tests.slack_requests import SlackSender

SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token"
MP_USERNAME = "bot.abc123.mp-service-account"
MP_SECRET = "mp-bot-secret-value"
ORG_ID = 1234

ALICE = "UALICE"  # a full member
GUEST = "UGUEST"
BOT_USER = "UROBOT"
GONE = "UGONE"
GENERAL = "C0GENERAL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--shift-clock",
        type=int,
        default=0,
        metavar="DAYS",
        help="run each test with the wall clock (time.time, datetime.now, date.today) moved this many days "
        "from the real now, ticking; time.monotonic is left alone. A test that mixes a fixed date with the "
        "wall clock then fails today instead of on the day the calendar passes it. Tests marked "
        "`subprocess` run unshifted (their child processes would see the real clock); deselect them "
        'with -m "not subprocess".',
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    days = config.getoption("shift_clock")
    return f"clock shifted by {days:+d} days (--shift-clock)" if days else None


@pytest.fixture(autouse=True)
def _shifted_clock(request: pytest.FixtureRequest) -> Iterator[None]:
    """--shift-clock=DAYS: the whole test, its function-scoped fixtures and its threads see one wall clock,
    DAYS away from today. Autouse, so it starts before the test's other function-scoped fixtures."""
    days = request.config.getoption("shift_clock")
    if not days or request.node.get_closest_marker("subprocess"):
        yield
        return
    with time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True), _no_python_children():
        yield


@contextlib.contextmanager
def _no_python_children() -> Iterator[None]:
    """Under a shifted clock a child Python process (the bot, gunicorn, python -m bot) would see the real
    one: such a test must be marked `subprocess`. Tools such as openssl may still run."""
    real = subprocess.Popen

    def refusing(args, *rest, **kwargs):
        command = [str(part) for part in (args if isinstance(args, list | tuple) else [args])]
        if any(
            part == sys.executable or part.endswith(("python", "python3", "gunicorn")) for part in command
        ):
            raise AssertionError(f"this test starts {command[:3]}: mark it @pytest.mark.subprocess")
        return real(args, *rest, **kwargs)

    subprocess.Popen = refusing  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token=BOT_TOKEN) as fake:
        fake.add_user(ALICE, tz=ALICE_TZ, name="alice")
        fake.add_user(GUEST, is_restricted=True, name="guest")
        fake.add_user(BOT_USER, is_bot=True, name="robot")
        fake.add_user(GONE, deleted=True, name="gone")
        yield fake


@pytest.fixture
def mixpanel() -> Iterator[FakeMixpanel]:
    with FakeMixpanel(username=MP_USERNAME, secret=MP_SECRET, organizations={ORG_ID: "Acme"}) as fake:
        yield fake


@dataclass
class RunningBot:
    runtime: Runtime
    url: str
    sender: SlackSender
    server: Any
    thread: threading.Thread
    slack: FakeSlack
    mixpanel: FakeMixpanel

    @property
    def store(self) -> Store:
        return self.runtime.store

    def stop(self) -> None:
        stop_http_server(self.server)
        self.thread.join(timeout=10)
        self.runtime.close(grace=10)

    def wait_idle(self, timeout: float = 20) -> None:
        assert self.runtime.wait_idle(timeout), "listeners or background jobs did not finish"

    def open_form(self, user_id: str = ALICE, *, channel_id: str = GENERAL) -> tuple[Any, dict, str]:
        """Type the command; return (http result, the opened view as Slack holds it, response_url)."""
        response_url = self.slack.new_response_url()
        result = self.sender.slash_command(user_id, channel_id=channel_id, response_url=response_url)
        assert result.status == 200, result.text
        view = self.slack.opened_by(result.trigger_id).response["view"]
        # A cold project cache opens a loading view first and completes it with views.update.
        if view.get("callback_id") != "mp_create_account":
            updated = self.slack.wait_for(
                lambda call: (
                    call.method == "views.update"
                    and call.args.get("view_id") == view["id"]
                    and call.response is not None
                )
            )[-1]
            view = updated.response["view"]
        return result, view, response_url

    def submit(self, view: dict, values: dict[str, Any], user_id: str = ALICE):
        return self.sender.view_submission(view, user_id=user_id, values=values)


@dataclass
class BotFactory:
    slack: FakeSlack
    mixpanel: FakeMixpanel
    tmp_path: Path
    running: list[RunningBot] = field(default_factory=list)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_app_token": None,
            "mixpanel_service_account_username": MP_USERNAME,
            "mixpanel_service_account_secret": MP_SECRET,
            "mixpanel_organization_id": ORG_ID,
            "slack_api_url": self.slack.base_url,
            "mixpanel_api_url": self.mixpanel.base_url,
            "database_url": f"sqlite:///{self.tmp_path / 'bot.db'}",
            "mixpanel_read_timeout": 5,
            "mixpanel_reconcile_delays": [0.0, 0.3],
            # Tests change Mixpanel behind the bot's back (delete_outside, add_account) and look at once;
            # the account list's cache has its own tests (tests/test_account_listing.py).
            "mixpanel_list_cache_seconds": 0,
            "mixpanel_max_rate_limit_wait": 5,
            "slack_timeout": 5,
            "policy_file": None,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    def start(
        self,
        *,
        policy: Policy | None = None,
        warm_cache: bool = True,
        background_tasks: bool | None = None,
        **overrides: Any,
    ) -> RunningBot:
        """warm_cache: the project catalog is loaded before the first request. background_tasks (default:
        as warm_cache): the start-up warm-up and the sweeper run, as in production; with warm_cache=False
        this is a cold start, where the first requests race the warm-up fetch."""
        settings = self.settings(**overrides)
        background = warm_cache if background_tasks is None else background_tasks
        runtime = build_runtime(settings, policy=policy or Policy(), background_tasks=background)
        if warm_cache:
            runtime.catalog.load()  # deterministic: the first form is complete (joins the warm-up fetch)
        app = create_app(runtime)
        server = create_http_server(
            app,
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            host="127.0.0.1",
            port=0,
            threads=settings.http_threads,
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.effective_port}{SLACK_EVENTS_PATH}"
        bot = RunningBot(
            runtime=runtime,
            url=url,
            sender=SlackSender(url, SIGNING_SECRET),
            server=server,
            thread=thread,
            slack=self.slack,
            mixpanel=self.mixpanel,
        )
        self.running.append(bot)
        return bot


@pytest.fixture
def bots(slack: FakeSlack, mixpanel: FakeMixpanel, tmp_path: Path) -> Iterator[BotFactory]:
    factory = BotFactory(slack=slack, mixpanel=mixpanel, tmp_path=tmp_path)
    yield factory
    for bot in factory.running:
        bot.stop()


@pytest.fixture
def bot(bots: BotFactory) -> RunningBot:
    return bots.start()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record at every level, including slack_sdk's request bodies."""
    caplog.set_level(logging.DEBUG)
    return caplog


def form_values(
    *,
    username: str = "etl-nightly",
    role: str = "analyst",
    projects: list[int] | None = None,
    expires_on: str | None = None,
    never: bool = False,
) -> dict[str, Any]:
    """What a person would choose in the modal, keyed by block id."""
    from bot.create import views

    values: dict[str, Any] = {
        views.BLOCK_USERNAME: username,
        views.BLOCK_ROLE: role,
        views.BLOCK_PROJECTS: [str(p) for p in (projects if projects is not None else [3001])],
    }
    if expires_on is not None:
        values[views.BLOCK_EXPIRY] = expires_on
    if never:
        values[views.BLOCK_NEVER] = [views.NEVER_VALUE]
    return values


def dump_database(store: Store) -> str:
    """Every row of every table, as text: leak tests search it for tokens."""
    lines = []
    with store.engine.connect() as connection:
        for table_name in inspect(connection).get_table_names():
            from sqlalchemy import MetaData, Table

            table = Table(table_name, MetaData(), autoload_with=connection)
            for row in connection.execute(select(table)):
                lines.append(f"{table_name}: {tuple(row)!r}")
    return "\n".join(lines)
