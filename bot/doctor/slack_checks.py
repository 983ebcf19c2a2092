"""Checks against Slack: the bot token and its scopes, the app token, and every id the policy names.

Each call needs only a scope in bot/slack/scopes.py (auth.test and apps.connections.open need none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.doctor.report import CheckResult, failed, passed, skipped, warned
from bot.models import Standing
from bot.policy.file import Policy
from bot.settings import Settings
from bot.slack.directory import standing_of
from bot.slack.scopes import REQUIRED_BOT_SCOPES

SLACK_TIMEOUT = 5
MAX_DETAIL = 120
# Slack's answers that mean the token itself is wrong, rather than Slack being busy or unwell.
TOKEN_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
    }
)
SCOPES_HEADER = "x-oauth-scopes"
REINSTALL = (
    "add the scope to the app (manifest.yml, or OAuth & Permissions > Bot Token Scopes) and reinstall it"
)


@dataclass(frozen=True)
class BotIdentity:
    team: str
    team_id: str
    name: str
    user_id: str
    granted_scopes: frozenset[str] | None  # None: Slack did not say


def slack_client(settings: Settings, token: str) -> WebClient:
    kwargs = {"base_url": settings.slack_web_api_base} if settings.slack_web_api_base else {}
    return WebClient(
        token=token,
        timeout=min(SLACK_TIMEOUT, max(1, round(settings.slack_timeout))),
        retry_handlers=[],
        **kwargs,
    )


def _where(settings: Settings) -> str:
    return "SLACK_API_URL" if settings.slack_api_url else "slack.com"


def _network_fix(settings: Settings) -> str:
    if settings.slack_api_url:
        return "check SLACK_API_URL (or unset it to use slack.com)"
    return "check that this machine reaches slack.com over HTTPS"


def _slack_error(error: Exception) -> str:
    """What went wrong, in Slack's words; never the request, which carries the token."""
    if isinstance(error, SlackApiError):
        response = error.response
        code = response.get("error") if isinstance(response.data, dict) else None
        if code == "missing_scope":
            return f"missing_scope: the token lacks {response.get('needed')}"
        return str(code)[:MAX_DETAIL] if code else f"HTTP {response.status_code}"
    detail = str(getattr(error, "reason", None) or error)  # urllib's URLError keeps the cause in .reason
    return f"{type(error).__name__}: {detail}"[:MAX_DETAIL] if detail else type(error).__name__


def _token_failure(name: str, setting: str, error: Exception, settings: Settings, fix: str) -> CheckResult:
    code = _slack_error(error)
    if code in TOKEN_ERRORS:
        return failed(name, f"Slack refused {setting} ({code})", fix)
    if isinstance(error, SlackApiError):
        return failed(name, f"Slack could not check {setting} ({code})", "try again in a minute")
    return failed(name, f"could not reach Slack at {_where(settings)} ({code})", _network_fix(settings))


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return ", ".join(value) if isinstance(value, list) else str(value)
    return None


def check_bot_token(client: WebClient, settings: Settings) -> tuple[CheckResult, BotIdentity | None]:
    try:
        response = client.auth_test()
    except (SlackClientError, OSError) as error:
        fix = "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page"
        return _token_failure("slack-token", "SLACK_BOT_TOKEN", error, settings, fix), None
    granted = _header(response.headers, SCOPES_HEADER)
    identity = BotIdentity(
        team=str(response.get("team", "")),
        team_id=str(response.get("team_id", "")),
        name=str(response.get("user", "")),
        user_id=str(response.get("user_id", "")),
        granted_scopes=None
        if granted is None
        else frozenset(s.strip() for s in granted.split(",") if s.strip()),
    )
    return passed(
        "slack-token",
        f"team {identity.team} ({identity.team_id}), bot @{identity.name} ({identity.user_id})",
    ), identity


def check_scopes(identity: BotIdentity) -> CheckResult:
    if identity.granted_scopes is None:
        return warned("slack-scopes", f"Slack did not report the granted scopes ({SCOPES_HEADER} header)")
    missing = sorted(REQUIRED_BOT_SCOPES - identity.granted_scopes)
    if missing:
        return failed("slack-scopes", f"the bot token lacks {', '.join(missing)}", REINSTALL)
    return passed(
        "slack-scopes", f"all {len(REQUIRED_BOT_SCOPES)} granted: {', '.join(sorted(REQUIRED_BOT_SCOPES))}"
    )


def check_app_token(settings: Settings) -> CheckResult:
    """Asks Slack for a Socket Mode URL but never connects: a connection would take a running bot's events."""
    if settings.slack_app_token is None:
        return skipped("slack-app-token", "SLACK_APP_TOKEN is not set: HTTP mode")
    app_token = settings.slack_app_token.get_secret_value()
    try:
        slack_client(settings, app_token).apps_connections_open(app_token=app_token)
    except (SlackClientError, OSError) as error:
        fix = (
            "make an app-level token with connections:write (Basic Information > App-Level Tokens) and "
            "enable Socket Mode; or unset SLACK_APP_TOKEN for HTTP mode"
        )
        return _token_failure("slack-app-token", "SLACK_APP_TOKEN", error, settings, fix)
    return passed("slack-app-token", "valid: Slack offers it a Socket Mode connection")


@dataclass
class Findings:
    """What one check found about several ids: FAIL on any problem, WARN on any warning, else PASS."""

    name: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problem_fixes: list[str] = field(default_factory=list)
    warning_fixes: list[str] = field(default_factory=list)

    def problem(self, text: str, fix: str) -> None:
        self.problems.append(text)
        self.problem_fixes.append(fix)

    def warning(self, text: str, fix: str) -> None:
        self.warnings.append(text)
        self.warning_fixes.append(fix)

    def lookup_failed(self, what: str, error: Exception) -> None:
        code = _slack_error(error)
        if code.startswith("missing_scope"):
            self.problem(f"{what}: {code}", REINSTALL)
        elif isinstance(error, SlackApiError):
            self.problem(f"{what}: Slack answered {code}", "try again later")
        else:
            self.problem(f"{what}: could not look it up ({code})", "check the network, and try again")

    def result(self, found: str) -> CheckResult:
        fix = "; ".join(dict.fromkeys(self.problem_fixes + self.warning_fixes))  # each once, in order
        if self.problems:
            return failed(self.name, "; ".join(self.problems + self.warnings), fix)
        if self.warnings:
            return warned(self.name, "; ".join(self.warnings), fix)
        return passed(self.name, found)


def _ids_in(policy: Policy, kind: str) -> dict[str, str]:
    """Each user (kind "users") or user group id the policy names, with the first key naming it."""
    named: dict[str, str] = {}
    for key, selector in policy.selectors():
        for slack_id in getattr(selector, kind):
            named.setdefault(slack_id, f"{key}.{kind}")
    if kind == "usergroups" and policy.governance.successor:  # a group, not a list of people
        named.setdefault(policy.governance.successor, "governance.successor")
    return named


def check_policy_users(client: WebClient, policy: Policy, policy_file: Path | None) -> CheckResult:
    named = _ids_in(policy, "users")
    if not named:
        return skipped("policy-users", "the policy names no user")
    findings, found = Findings("policy-users"), []
    for user_id, key in named.items():
        try:
            user = client.users_info(user=user_id)["user"]
        except (SlackClientError, OSError) as error:
            if _slack_error(error) == "user_not_found":
                findings.problem(
                    f"{user_id} ({key}): no such user",
                    f"correct the id in {policy_file} (Slack profile > ⋮ > Copy member ID)",
                )
            else:
                findings.lookup_failed(f"{user_id} ({key})", error)
            continue
        label = f"@{user.get('name', user_id)} ({user_id})"
        found.append(label)
        why = {
            Standing.DEACTIVATED: "is deactivated",
            Standing.BOT: "is a bot, and bots are always refused",
            Standing.GUEST: "is a guest, and guests are always refused",
        }.get(standing_of(user))
        if why:
            findings.warning(f"{label} {why}", f"remove them from {policy_file}")
    return findings.result(f"{len(found)} found: {', '.join(found)}")


def check_policy_usergroups(client: WebClient, policy: Policy, policy_file: Path | None) -> CheckResult:
    named = _ids_in(policy, "usergroups")
    if not named:
        return skipped("policy-usergroups", "the policy names no user group")
    findings = Findings("policy-usergroups")
    for group_id, key in named.items():
        try:  # the very call the bot makes to learn who is in a group
            members = client.usergroups_users_list(usergroup=group_id).get("users") or []
        except (SlackClientError, OSError) as error:
            if _slack_error(error) == "no_such_subteam":
                findings.problem(
                    f"{group_id} ({key}): no such user group",
                    f"correct the id in {policy_file} (a user group's id is in its link: S…)",
                )
            else:
                findings.lookup_failed(f"{group_id} ({key})", error)
            continue
        if not members:
            findings.warning(
                f"{group_id} ({key}) has no members", f"add members, or remove it from {policy_file}"
            )
    return findings.result(f"{len(named)} found: {', '.join(named)}")


def check_policy_channels(client: WebClient, policy: Policy, bot: BotIdentity) -> CheckResult:
    channels = policy.channels()
    if not channels:
        return skipped("policy-channels", "the policy names no channel")
    findings, found = Findings("policy-channels"), []
    for key, channel_id in channels.items():
        try:
            channel = client.conversations_info(channel=channel_id)["channel"]
        except (SlackClientError, OSError) as error:
            if _slack_error(error) == "channel_not_found":
                findings.problem(
                    f"{key} {channel_id}: not found, or private without the bot in it",
                    f"check the id of {key}, and /invite @{bot.name} there",
                )
            else:
                findings.lookup_failed(f"{key} {channel_id}", error)
            continue
        name = channel.get("name", channel_id)
        label = f"{key} #{name} ({channel_id})"
        if channel.get("is_archived"):
            findings.problem(f"{label} is archived", f"unarchive it, or set {key} to another channel")
        elif not channel.get("is_member"):
            findings.problem(f"{label}: the bot is not a member", f"/invite @{bot.name} in #{name}")
        else:
            found.append(label)
    return findings.result(f"the bot is in {', '.join(found)}")
