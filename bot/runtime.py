"""Wiring: build every client from settings once, and hand them to the flow. Nothing here runs at import."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slack_bolt import App
from slack_sdk import WebClient

from bot.approvals import ApprovalFlow
from bot.catalog import ProjectCatalog
from bot.delivery import SlackDelivery, response_url_hosts
from bot.directory import SlackDirectory
from bot.jobs import JobRunner
from bot.mixpanel import MixpanelClient
from bot.policy import Policy, load_policy
from bot.redaction import install_log_redaction, redactor
from bot.service import CreationFlow, FlowDependencies
from bot.settings import Settings
from bot.storage import Store

log = logging.getLogger(__name__)

LISTENER_THREADS = 32


def protect_secrets(settings: Settings) -> None:
    """Redact the bot's own credentials from every log record; safe to call more than once."""
    install_log_redaction()
    for secret in settings.secrets():
        redactor.add(secret)


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
    web_client: WebClient
    mixpanel: MixpanelClient
    store: Store
    catalog: ProjectCatalog
    jobs: JobRunner
    flow: CreationFlow
    approvals: ApprovalFlow | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def new_bolt_app(self) -> App:
        # Bolt's default listener pool has 5 threads; listeners here are short, but Slack bursts are not.
        return App(
            client=self.web_client,
            signing_secret=self.settings.slack_signing_secret.get_secret_value(),
            process_before_response=False,
            listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="listener"),
            logger=logging.getLogger("slack_bolt"),
        )

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

    def close(self, grace: float | None = None) -> bool:
        """Finish in-flight creations (bounded), then release connections."""
        self._stopping.set()
        finished = self.jobs.shutdown(self.settings.shutdown_grace_seconds if grace is None else grace)
        self.mixpanel.close()
        self.store.close()
        return finished


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
        kwargs = {"base_url": settings.slack_web_api_base} if settings.slack_web_api_base else {}
        web_client = WebClient(
            token=settings.slack_bot_token.get_secret_value(),
            timeout=max(1, round(settings.slack_timeout)),
            **kwargs,
        )
    mixpanel = MixpanelClient(
        settings.mixpanel_app_api_base,
        settings.mixpanel_service_account_username,
        settings.mixpanel_service_account_secret,
        connect_timeout=settings.mixpanel_connect_timeout,
        read_timeout=settings.mixpanel_read_timeout,
        max_rate_limit_wait=settings.mixpanel_max_rate_limit_wait,
        pool_size=max(settings.creation_workers, 10),
    )
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
            web_client, ttl=settings.slack_cache_seconds, usergroups=policy.usergroups_in_use()
        ),
        delivery=SlackDelivery(
            web_client,
            timeout=settings.slack_timeout,
            response_url_hosts=response_url_hosts(settings.slack_api_url),
        ),
        slack=web_client,
        jobs=jobs,
        public_host=settings.mixpanel_public_host,
        reconcile_delays=list(settings.mixpanel_reconcile_delays),
        pause=jobs.pause,
    )
    if clock is not None:
        deps.clock = clock
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
        approvals=ApprovalFlow(flow, policy.approval) if policy.approval is not None else None,
    )
    if background_tasks:
        # Warm the project list so the first modal opens complete; failure only means a loading view later.
        catalog.refresh_in_background()
        runtime.start_sweeper()
    return runtime
