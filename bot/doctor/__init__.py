"""`python -m bot doctor`: check a deployment from the outside, as its operator would.

One line per check: PASS, WARN, FAIL or SKIP, its name, what it found and, for a failure, the fix. SKIP
means the check did not run: nothing to check (no app token, no channel in the policy), or a check it
needs failed, and that FAIL is the one to fix. The exit code is 1 when a check failed, else 0.
Doctor only reads: it never migrates the database, opens a Socket Mode connection or posts to Slack.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from bot.doctor.destination_checks import destination_checks
from bot.doctor.governance_checks import check_ownerless
from bot.doctor.local_checks import check_database, check_policy_file, check_settings, database_password
from bot.doctor.mixpanel_checks import MIXPANEL_CHECKS, mixpanel_checks
from bot.doctor.report import CheckResult, Status, exit_code, failed, render_json, render_text, skipped
from bot.doctor.rotation_checks import check_rotations
from bot.doctor.slack_checks import (
    check_app_token,
    check_bot_token,
    check_policy_channels,
    check_policy_usergroups,
    check_policy_users,
    check_scopes,
    slack_client,
)
from bot.redaction import install_log_redaction, redactor
from bot.settings import Settings

log = logging.getLogger(__name__)

CHECKS = (
    "settings",
    "slack-token",
    "slack-scopes",
    "slack-app-token",
    *MIXPANEL_CHECKS,
    "database",
    "rotations",
    "policy-file",
    "policy-users",
    "policy-usergroups",
    "policy-channels",
    "ownerless-accounts",
)
POLICY_SLACK_CHECKS = ("policy-users", "policy-usergroups", "policy-channels")


def crashed(name: str, error: Exception) -> CheckResult:
    """A bug in a check is one FAIL line, never a traceback that might print what the check held."""
    log.debug("check %s crashed", name, exc_info=True)
    return failed(name, f"the check itself failed ({type(error).__name__})", "report this as a bug")


def guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as error:
        return crashed(name, error)


def _protect(settings: Settings) -> None:
    """Whatever is printed (and logged) goes through the redactor, which knows every secret here."""
    install_log_redaction()
    for secret in [*settings.secrets(), database_password(settings.database_url)]:
        redactor.add(secret)


def diagnose() -> list[CheckResult]:
    settings_check, settings = check_settings()
    if settings is None:
        return [
            settings_check,
            *(skipped(name, "needs valid settings (see settings)") for name in CHECKS[1:]),
        ]
    _protect(settings)
    client = slack_client(settings, settings.slack_bot_token.get_secret_value())
    try:
        token_check, identity = check_bot_token(client, settings)
    except Exception as error:
        token_check, identity = crashed("slack-token", error), None
    needs_bot = "needs a working bot token (see slack-token)"
    results = [
        settings_check,
        token_check,
        guarded("slack-scopes", lambda: check_scopes(identity))
        if identity
        else skipped("slack-scopes", needs_bot),
        guarded("slack-app-token", lambda: check_app_token(settings)),
        *_mixpanel_checks(settings),
    ]
    database = guarded("database", lambda: check_database(settings.database_url))
    results.append(database)
    results.append(
        guarded("rotations", lambda: check_rotations(settings.database_url))
        if database.status is Status.PASS
        else skipped("rotations", "needs a database at the newest migration (see database)")
    )
    policy_file = settings.resolved_policy_file
    try:
        policy_check, policy = check_policy_file(policy_file)
    except Exception as error:
        policy_check, policy = crashed("policy-file", error), None
    results.append(policy_check)
    if policy is not None:
        try:
            results.extend(destination_checks(policy, settings))
        except Exception as error:
            results.append(crashed("destinations", error))
    database_ok = any(r.name == "database" and r.status is Status.PASS for r in results)
    if policy is None or not database_ok:
        reason = "needs a valid policy file (see policy-file)" if policy is None else "see database"
        ownerless = skipped("ownerless-accounts", reason)
    else:
        ownerless = guarded("ownerless-accounts", lambda: check_ownerless(settings.database_url, policy))
    if policy is None or identity is None:
        reason = "needs a valid policy file (see policy-file)" if policy is None else needs_bot
        return results + [skipped(name, reason) for name in POLICY_SLACK_CHECKS] + [ownerless]
    return [
        *results,
        guarded("policy-users", lambda: check_policy_users(client, policy, policy_file)),
        guarded("policy-usergroups", lambda: check_policy_usergroups(client, policy, policy_file)),
        guarded("policy-channels", lambda: check_policy_channels(client, policy, identity)),
        ownerless,
    ]


def _mixpanel_checks(settings: Settings) -> list[CheckResult]:
    try:
        return mixpanel_checks(settings)
    except Exception as error:
        first, *rest = MIXPANEL_CHECKS
        return [crashed(first, error), *(skipped(name, f"see {first}") for name in rest)]


def main(output_format: str = "text") -> int:
    results = diagnose()
    render = render_json if output_format == "json" else render_text
    sys.stdout.write(redactor.redact(render(results)))
    sys.stdout.flush()
    return exit_code(results)
