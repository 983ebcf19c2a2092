"""Wiring: build every client from settings once, and hand them to the flow. Nothing here runs at import."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.approve.flow import ApprovalFlow
from bot.create.flow import CreationFlow
from bot.db.store import Store
from bot.dependencies import FlowDependencies
from bot.destinations.base import Destination
from bot.destinations.registry import DestinationsError, build_destinations
from bot.govern.wiring import Governance, build_governance
from bot.jobs import JobRunner, ListenerPool
from bot.manage.flow import ManageFlow
from bot.manage.replace import ReplaceFlow
from bot.manage.rescope import RescopeFlow
from bot.manage.store import LifecycleStore
from bot.mixpanel.catalog import ProjectCatalog
from bot.mixpanel.client import MixpanelClient
from bot.mixpanel.listing import AccountListing
from bot.models import Workspace
from bot.policy.file import Policy, load_policy
from bot.redaction import install_log_redaction, redactor
from bot.remind.flow import ReminderJob
from bot.remind.store import ReminderStore
from bot.rotate.approval import RotationApproval
from bot.rotate.flow import RotationFlow
from bot.rotate.job import RotationJob
from bot.rotate.store import RotationStore
from bot.settings import Settings, SettingsError
from bot.slack.delivery import SlackDelivery, response_url_hosts
from bot.slack.directory import SlackDirectory, installation_of
from bot.slack.retry import BACKGROUND_RETRY_BUDGET, TRIGGER_WINDOW_RETRY_BUDGET, retry_handlers
from bot.web.gate import answer_unexpected_errors

log = logging.getLogger(__name__)

LISTENER_THREADS = 32


def protect_secrets(settings: Settings) -> None:
    """Redact the bot's own credentials from every log record; safe to call more than once."""
    install_log_redaction()
    for secret in settings.secrets():
        redactor.pin(secret)


def configure_logging(settings: Settings) -> None:
    protect_secrets(settings)
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s",
    )


@dataclass
class Runtime:
    settings: Settings
    policy: Policy
    web_client: WebClient  # for calls inside Slack's 3 s trigger window; after the ack, the flows'
    # background_slack (and delivery's client) wait out rate limits for up to BACKGROUND_RETRY_BUDGET
    mixpanel: MixpanelClient
    store: Store
    catalog: ProjectCatalog
    jobs: JobRunner
    flow: CreationFlow
    manage: ManageFlow
    reminders: ReminderJob
    replace: ReplaceFlow
    rescope: RescopeFlow
    governance: Governance
    approvals: ApprovalFlow | None = None
    rotation: RotationJob | None = None  # set by build_runtime (bot/rotate)
    _stopping: threading.Event = field(default_factory=threading.Event)
    listeners: ListenerPool = field(default_factory=lambda: ListenerPool(LISTENER_THREADS))

    def new_bolt_app(self) -> App:
        # Bolt's default listener pool has 5 threads; listeners here are short, but Slack bursts are not.
        app = App(
            client=self.web_client,
            signing_secret=self.settings.slack_signing_secret.get_secret_value(),
            process_before_response=False,
            listener_executor=self.listeners,
            logger=logging.getLogger("slack_bolt"),
            # Unhandled requests go to the error handler too, which logs them in one line without the body.
            raise_error_for_unhandled_request=True,
        )
        answer_unexpected_errors(app)
        return app

    def start_sweeper(self) -> None:
        """Settle requests that an interrupted run left half-done: now, then every few minutes."""
        idle_for = timedelta(seconds=self.settings.stale_request_seconds)

        def sweep_forever() -> None:
            while True:
                try:
                    self.flow.sweep_stale(idle_for)
                except Exception:
                    log.exception("Sweeping interrupted requests failed")
                if self.approvals is not None:
                    try:
                        self.approvals.expire_due()
                        self.approvals.remind_due()
                    except Exception:
                        log.exception("Expiring approval requests failed")
                if self._stopping.wait(self.settings.sweep_interval_seconds):
                    return

        threading.Thread(target=sweep_forever, name="sweeper", daemon=True).start()

    def wait_idle(self, timeout: float) -> bool:
        """Until no listener runs after its ack and no background job runs, both at once (a listener
        may start a job); False if that takes longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if not (self.listeners.wait_idle(max(left, 0)) and self.jobs.wait_idle(max(left, 0))):
                return False
            if self.listeners.wait_idle(0):
                return True

    def close(self, grace: float | None = None) -> bool:
        """Finish in-flight creations (bounded), then release connections."""
        self._stopping.set()
        finished = self.jobs.shutdown(self.settings.shutdown_grace_seconds if grace is None else grace)
        self.mixpanel.close()
        self.store.close()
        return finished


def mixpanel_client(settings: Settings, **overrides: Any) -> MixpanelClient:
    """The Mixpanel client with the settings' timeouts and retry policy (the deletion lease and the stale
    request bound are derived from the same settings). `overrides` go to MixpanelClient (tests: sleep)."""
    options: dict[str, Any] = {
        "connect_timeout": settings.mixpanel_connect_timeout,
        "read_timeout": settings.mixpanel_read_timeout,
        "max_rate_limit_wait": settings.mixpanel_max_rate_limit_wait,
        "pool_size": max(settings.creation_workers, 10),
    }
    return MixpanelClient(
        settings.mixpanel_app_api_base,
        settings.mixpanel_service_account_username,
        settings.mixpanel_service_account_secret,
        **{**options, **overrides},
    )


def slack_client(settings: Settings, *, retry_budget: float) -> WebClient:
    """A Slack Web API client that waits out HTTP 429s for at most `retry_budget` seconds per call."""
    kwargs = {"base_url": settings.slack_web_api_base} if settings.slack_web_api_base else {}
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        timeout=max(1, round(settings.slack_timeout)),
        retry_handlers=retry_handlers(retry_budget),
        **kwargs,
    )


def _installation(web_client: WebClient, settings: Settings) -> Workspace:
    """Asked once at start: the policy refuses people from other workspaces unless it names them."""
    try:
        return installation_of(web_client)
    except SlackApiError as error:
        reason = str(error.response.get("error") or "rejected")[:100]
        raise SettingsError([f"SLACK_BOT_TOKEN: Slack did not accept it ({reason})"]) from None
    except (SlackClientError, OSError) as error:
        where = "SLACK_API_URL" if settings.slack_api_url else "the network"
        raise SettingsError(
            [f"{where}: could not reach Slack to check SLACK_BOT_TOKEN ({type(error).__name__})"]
        ) from None


def _destinations(policy: Policy, settings: Settings) -> dict[str, Destination]:
    """The policy's secret stores; missing credentials stop the start, naming the destination."""
    try:
        return build_destinations(
            [(entry.name, entry.kind, entry.config) for entry in policy.destinations],
            settings.destination_credentials(),
            timeout=settings.destination_timeout,
        )
    except DestinationsError as error:
        raise SettingsError(error.problems) from None


def build_runtime(
    settings: Settings,
    *,
    policy: Policy | None = None,
    web_client: WebClient | None = None,
    store: Store | None = None,
    clock: Callable[[], datetime] | None = None,
    background_tasks: bool = True,
) -> Runtime:
    protect_secrets(settings)  # also for runtimes built without main(), as in the tests
    policy = policy if policy is not None else load_policy(settings.resolved_policy_file)
    if web_client is None:
        web_client = slack_client(settings, retry_budget=TRIGGER_WINDOW_RETRY_BUDGET)
        background_client = slack_client(settings, retry_budget=BACKGROUND_RETRY_BUDGET)
    else:
        background_client = web_client
    destinations = _destinations(policy, settings)
    installation = _installation(web_client, settings)
    mixpanel = mixpanel_client(settings)
    store = store or Store.connect(settings.database_url)
    catalog = ProjectCatalog(
        mixpanel, organization_id=settings.mixpanel_organization_id, ttl=settings.project_cache_seconds
    )
    jobs = JobRunner(settings.creation_workers)
    deps = FlowDependencies(
        policy=policy,
        store=store,
        mixpanel=mixpanel,
        catalog=catalog,
        directory=SlackDirectory(
            web_client,
            ttl=settings.slack_cache_seconds,
            usergroups=policy.usergroups_in_use(),
            patient_client=background_client,
        ),
        delivery=SlackDelivery(
            background_client,
            timeout=settings.slack_timeout,
            response_url_hosts=response_url_hosts(settings.slack_api_url),
            retry_handlers=retry_handlers(BACKGROUND_RETRY_BUDGET),
        ),
        slack=web_client,
        background_slack=background_client,
        jobs=jobs,
        public_host=settings.mixpanel_public_host,
        installation=installation,
        reconcile_delays=list(settings.mixpanel_reconcile_delays),
        pause=jobs.pause,
        uncertain_recheck=timedelta(hours=settings.uncertain_recheck_hours),
        destinations=destinations,
    )
    if clock is not None:
        deps.clock = clock
    lifecycle = LifecycleStore(store, deletion_lease=timedelta(seconds=settings.deletion_lease_seconds()))
    manage = ManageFlow(
        deps,
        lifecycle,
        own_username=settings.mixpanel_service_account_username,
        listing=AccountListing(mixpanel, ttl=settings.mixpanel_list_cache_seconds),
    )
    replace = ReplaceFlow(manage)
    deps.may_replace = replace.may_replace
    deps.after_delivery = replace.after_delivery
    flow = CreationFlow(deps)
    runtime = Runtime(
        settings=settings,
        policy=policy,
        web_client=web_client,
        mixpanel=mixpanel,
        store=store,
        catalog=catalog,
        jobs=jobs,
        flow=flow,
        manage=manage,
        reminders=ReminderJob(manage, ReminderStore(store)),
        replace=replace,
        rescope=RescopeFlow(manage),
        governance=build_governance(manage, store),
        approvals=ApprovalFlow(flow, policy.approval) if policy.approval is not None else None,
    )
    runtime.rotation = RotationJob(
        RotationFlow(flow, manage.records, RotationStore(store), holder=uuid.uuid4().hex),
        flow,
        manage.records,
        ReminderStore(store),
        stale_after=timedelta(seconds=settings.stale_request_seconds),
    )
    if runtime.approvals is not None:
        runtime.rotation.flow.approvals = RotationApproval(runtime.approvals)
    if background_tasks:
        # Warm the project list in every worker process, so the first modal opens complete; a cold form
        # arriving meanwhile joins this fetch. Failure only means a loading view and a fetch later.
        catalog.refresh_in_background()
        runtime.start_sweeper()
        runtime.reminders.start(settings.reminder_interval_seconds, runtime._stopping)
        # Governance runs at the reminders' pace, under its own lease; it does nothing the policy left off.
        runtime.governance.job.start(settings.reminder_interval_seconds, runtime._stopping)
        runtime.rotation.start(settings.rotation_interval_seconds, runtime._stopping)
    return runtime


def run_command(doing: str, work: Callable[[Runtime], int]) -> int:
    """An operator command (`python -m bot remind`, `rotate`, `govern`, `inventory`): settings, logging, a
    runtime without background tasks, `work`, and one plain line on stderr for what stops it. Exit codes:
    0 done, 1 Mixpanel could not be asked, 2 the settings or the organization are wrong."""
    from bot.mixpanel.catalog import OrganizationUnknown
    from bot.mixpanel.client import MixpanelError
    from bot.settings import load_settings

    try:
        settings = load_settings()
    except SettingsError as error:
        for problem in error.problems:
            print(f"cannot {doing}: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings)
    runtime = build_runtime(settings, background_tasks=False)
    try:
        return work(runtime)
    except MixpanelError as error:
        print(f"cannot {doing}: Mixpanel could not be asked ({error.kind})", file=sys.stderr)
        return 1
    except OrganizationUnknown as error:
        print(f"cannot {doing}: {error}", file=sys.stderr)
        return 2
    finally:
        runtime.close(grace=30)
