"""Process settings, read once from the environment and `.env`.

Everything that varies between deployments lives here; the access policy (who may create what) lives
in the policy file, see `bot.policy.access`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.destinations.registry import CREDENTIAL_SETTINGS, IDENTIFIER_SETTINGS
from bot.mixpanel.client import longest_idempotent_call_seconds
from bot.slack.retry import BACKGROUND_RETRY_BUDGET, DELIVERY_RETRY_BUDGET


def default_process_count() -> int:
    """Processes to serve with by default (HTTP and Socket Mode alike): a Python process uses one core."""
    return min(4, os.cpu_count() or 1)


SOCKET_MODE_MAX_CONNECTIONS = 10  # Slack's limit per app


def default_socket_mode_processes(web_concurrency: int) -> int:
    """Like HTTP mode's workers: Heroku sets WEB_CONCURRENCY for the dyno's memory in every dyno type."""
    return min(SOCKET_MODE_MAX_CONNECTIONS, web_concurrency)


DEFAULT_POLICY_FILE = Path("policy.yml")


class Region(StrEnum):
    US = "us"
    EU = "eu"
    IN = "in"


# The hosts a requester pastes into curl; the app API lives under /api/app on each.
REGION_HOSTS: dict[Region, str] = {
    Region.US: "https://mixpanel.com",
    Region.EU: "https://eu.mixpanel.com",
    Region.IN: "https://in.mixpanel.com",
}

PositiveSeconds = Annotated[float, Field(gt=0, le=600)]
STALE_MARGIN_SECONDS = 30.0


class DatabaseSettings(BaseSettings):
    """Just enough to read the audit trail (`python -m bot audit`) without Slack or Mixpanel credentials."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore", frozen=True
    )

    database_url: str = "sqlite:///mp_service_accounts.db"

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        # Heroku and most hosts hand out postgres:// URLs; SQLAlchemy needs the driver named.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value


class Settings(DatabaseSettings):
    slack_bot_token: SecretStr
    slack_signing_secret: SecretStr
    slack_app_token: SecretStr | None = None

    mixpanel_service_account_username: str = Field(min_length=1)
    mixpanel_service_account_secret: SecretStr
    mixpanel_organization_id: int | None = Field(default=None, gt=0)
    mixpanel_region: Region = Region.US

    port: int = Field(default=3000, ge=1, le=65535)
    slack_api_url: str | None = None
    mixpanel_api_url: str | None = None

    policy_file: Path | None = None
    log_level: str = "INFO"

    # Credentials of the policy's destinations (bot/destinations); each kind names the ones it needs, and
    # the app refuses to start, naming the destination, when they are missing.
    vault_token: SecretStr | None = None
    vault_role_id: SecretStr | None = None
    vault_secret_id: SecretStr | None = None
    vault_namespace: SecretStr | None = None
    github_token: SecretStr | None = None
    # A GitHub App instead of GITHUB_TOKEN (bot/destinations/github_auth.py): its id, its private key (PEM)
    # and the id of its installation on the repositories' owner.
    github_app_id: SecretStr | None = None
    github_app_private_key: SecretStr | None = None
    github_app_installation_id: SecretStr | None = None
    # Each call to a destination (a write, a read-back): connect and read.
    destination_timeout: PositiveSeconds = 10.0

    mixpanel_connect_timeout: PositiveSeconds = 3.05
    mixpanel_read_timeout: PositiveSeconds = 30.0
    mixpanel_max_rate_limit_wait: PositiveSeconds = 30.0
    # After an ambiguous create, Mixpanel may still finish the request; look again after these delays.
    mixpanel_reconcile_delays: list[Annotated[float, Field(ge=0, le=300)]] = [0.0, 5.0, 30.0]
    slack_timeout: PositiveSeconds = 10.0
    shutdown_grace_seconds: PositiveSeconds = 25.0
    # HTTP mode: worker processes (Heroku sets WEB_CONCURRENCY), and request threads in each.
    web_concurrency: int = Field(default_factory=default_process_count, ge=1, le=64)
    http_threads: int = Field(default=32, ge=4, le=512)
    # Socket Mode: envelopes handled at once (each until its ack); slack_sdk's own default is 10.
    socket_mode_concurrency: int = Field(default=32, ge=1, le=512)
    # Socket Mode: processes, each with its own connection; Slack allows an app at most 10 connections.
    # Unset: like WEB_CONCURRENCY (see _socket_mode_processes_default).
    socket_mode_processes: int = Field(
        default_factory=lambda: default_socket_mode_processes(default_process_count()),
        ge=1,
        le=SOCKET_MODE_MAX_CONNECTIONS,
    )
    creation_workers: int = Field(default=64, ge=1, le=1024)
    project_cache_seconds: int = Field(default=300, ge=0)
    slack_cache_seconds: int = Field(default=60, ge=0)
    # The organization's account list (bot/mixpanel/listing.py): short, since others change it too.
    mixpanel_list_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # A request untouched this long belongs to a run that died; longer than any creation can take.
    stale_request_seconds: int = Field(default=600, ge=1)
    sweep_interval_seconds: int = Field(default=300, ge=1)
    # An uncertain create is looked for again by the sweeper for this long before it is called failed.
    uncertain_recheck_hours: float = Field(default=6.0, ge=0, le=24 * 14)
    # How often a running instance looks for accounts to remind their creators of (under a database lease).
    reminder_interval_seconds: int = Field(default=900, ge=10)
    # How often a running instance moves rotations on (bot/rotate/job.py, under a database lease); 0: never,
    # for deployments that run `python -m bot rotate` from a scheduler instead.
    rotation_interval_seconds: int = Field(default=900, ge=0)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("slack_api_url", "mixpanel_api_url")
    @classmethod
    def _url_shape(cls, value: str | None) -> str | None:
        if not value:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @model_validator(mode="before")
    @classmethod
    def _socket_mode_processes_default(cls, data: Any) -> Any:
        """Unset, it follows WEB_CONCURRENCY. Read from the raw values, so that a bad or missing setting
        elsewhere is named alone rather than followed by a complaint about this default."""
        if not isinstance(data, dict) or data.get("socket_mode_processes") not in (None, ""):
            return data
        try:
            workers = int(data.get("web_concurrency") or default_process_count())
        except (TypeError, ValueError):
            return data  # WEB_CONCURRENCY itself is reported
        return {**data, "socket_mode_processes": default_socket_mode_processes(max(1, workers))}

    @model_validator(mode="after")
    def _stale_outlasts_a_creation(self) -> Settings:
        longest = self.longest_silent_creation_seconds()
        if self.stale_request_seconds <= longest:
            raise ValueError(
                f"STALE_REQUEST_SECONDS: must exceed {longest:.0f}, the longest a live creation may go "
                "without a database write (from MIXPANEL_CONNECT_TIMEOUT, MIXPANEL_READ_TIMEOUT, "
                "MIXPANEL_MAX_RATE_LIMIT_WAIT, MIXPANEL_RECONCILE_DELAYS, SLACK_TIMEOUT and Slack's "
                f"429 waits, plus {STALE_MARGIN_SECONDS:.0f} s); smaller, the sweeper would settle creations "
                "still running"
            )
        return self

    def longest_silent_creation_seconds(self) -> float:
        """The longest a live creation goes between two writes to its request, plus a margin: one Mixpanel
        call; the reconcile passes (a wait and a list call each); delivery (three Slack paths and
        conversations.open, with their 429 waits); or, on the break-glass path, the approvers' notice
        (conversations.open and a post, with their 429 waits) and the organization lookup before the
        create."""
        one_call = (
            self.mixpanel_connect_timeout + self.mixpanel_read_timeout + self.mixpanel_max_rate_limit_wait
        )
        reconciling = sum(self.mixpanel_reconcile_delays) + len(self.mixpanel_reconcile_delays) * one_call
        delivering = 4 * self.slack_timeout + DELIVERY_RETRY_BUDGET
        notifying = 2 * self.slack_timeout + BACKGROUND_RETRY_BUDGET + one_call
        # A write to a destination: at most six calls (look, key, two writes or a write and its mark, read
        # back, metadata) between the record of the account and the record of its delivery.
        storing = 6 * self.destination_timeout
        return max(one_call, reconciling, delivering, notifying, storing) + STALE_MARGIN_SECONDS

    def deletion_lease_seconds(self) -> float:
        """How long a claimed deletion stays its claimant's before another click may take it over: the
        longest one `delete_if_present` may take with these timeouts and this retry policy, plus the margin
        (the claim's own write, clocks of instances a little apart). Shorter, a click could take over a
        deletion still waiting on Mixpanel and send a second DELETE."""
        longest = longest_idempotent_call_seconds(
            connect_timeout=self.mixpanel_connect_timeout,
            read_timeout=self.mixpanel_read_timeout,
            max_rate_limit_wait=self.mixpanel_max_rate_limit_wait,
        )
        return longest + STALE_MARGIN_SECONDS

    @property
    def mixpanel_app_api_base(self) -> str:
        if self.mixpanel_api_url:
            return self.mixpanel_api_url.rstrip("/")
        return REGION_HOSTS[self.mixpanel_region] + "/api/app"

    @property
    def mixpanel_public_host(self) -> str:
        return REGION_HOSTS[self.mixpanel_region]

    @property
    def slack_web_api_base(self) -> str | None:
        if not self.slack_api_url:
            return None
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"

    @property
    def resolved_policy_file(self) -> Path | None:
        if self.policy_file is not None:
            return self.policy_file
        return DEFAULT_POLICY_FILE if DEFAULT_POLICY_FILE.exists() else None

    def destination_credentials(self) -> dict[str, SecretStr | None]:
        """The destinations' credentials by setting name, as bot/destinations/registry.py reads them."""
        return {name: getattr(self, name.lower()) for name in CREDENTIAL_SETTINGS}

    def secrets(self) -> list[str]:
        """Every credential the process holds, for the log redactor."""
        values = [self.slack_bot_token, self.slack_signing_secret, self.mixpanel_service_account_secret]
        if self.slack_app_token is not None:
            values.append(self.slack_app_token)
        values.extend(
            value
            for name, value in self.destination_credentials().items()
            if value is not None and name not in IDENTIFIER_SETTINGS
        )
        return [value.get_secret_value() for value in values]


class SettingsError(Exception):
    """Raised with one human-readable line per bad setting."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def describe_validation_error(error: ValidationError, *, env_names: bool = True) -> list[str]:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(file)"
        name = location.upper() if env_names else location
        if not item["loc"] and item["type"] == "value_error":
            problems.append(item["msg"].removeprefix("Value error, "))  # a rule across settings names them
        elif item["type"] == "missing":
            problems.append(f"{name}: missing (required)")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{name}: unknown key")
        else:
            # Never echo the offending input: it may be a secret.
            problems.append(f"{name}: {item['msg']}")
    return problems


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None
