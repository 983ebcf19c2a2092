"""Checks against Mixpanel, all from one `/me` call: host, credentials, organization, role, projects."""

from __future__ import annotations

from bot.doctor.report import CheckResult, Status, failed, passed, skipped, warned
from bot.mixpanel.client import ErrorKind, MixpanelClient, MixpanelError
from bot.mixpanel.models import Me, MeOrganization
from bot.settings import Settings

MANAGING_ROLES = ("admin", "owner")
# Errors that mean the host is not (or not reachably) Mixpanel's app API, rather than a refusal of the bot.
_HOST_FAILURES = (
    ErrorKind.CONNECTION,
    ErrorKind.TIMEOUT,
    ErrorKind.SERVER_ERROR,
    ErrorKind.INVALID_RESPONSE,
    ErrorKind.NOT_FOUND,
)
CREDENTIAL_SETTINGS = "MIXPANEL_SERVICE_ACCOUNT_USERNAME and MIXPANEL_SERVICE_ACCOUNT_SECRET"
SHOWN_PROJECTS = 5


def fetch_me(settings: Settings) -> Me | MixpanelError:
    """One attempt, short timeouts: the operator is waiting, and a retry would only hide a problem."""
    client = MixpanelClient(
        settings.mixpanel_app_api_base,
        settings.mixpanel_service_account_username,
        settings.mixpanel_service_account_secret,
        connect_timeout=min(settings.mixpanel_connect_timeout, 3.05),
        read_timeout=min(settings.mixpanel_read_timeout, 10.0),
        read_attempts=1,
        pool_size=1,
    )
    try:
        return client.me()
    except MixpanelError as error:
        return error
    finally:
        client.close()


def _host_fix(settings: Settings) -> str:
    if settings.mixpanel_api_url:
        return "check MIXPANEL_API_URL (or unset it to use MIXPANEL_REGION)"
    return (
        f"check MIXPANEL_REGION (now {settings.mixpanel_region}): us, eu or in, where the organization's "
        "data lives; and that this machine reaches that host over HTTPS"
    )


def check_host(settings: Settings, outcome: Me | MixpanelError) -> CheckResult:
    base = settings.mixpanel_app_api_base
    if isinstance(outcome, MixpanelError) and outcome.kind in _HOST_FAILURES:
        detail = f"HTTP {outcome.status}: {outcome.reason}" if outcome.status else outcome.reason
        return failed(
            "mixpanel-host", f"{base} did not answer as Mixpanel's app API ({detail})", _host_fix(settings)
        )
    return passed("mixpanel-host", f"{base} answers")


def check_credentials(settings: Settings, outcome: Me | MixpanelError) -> CheckResult:
    username = settings.mixpanel_service_account_username
    if isinstance(outcome, MixpanelError):
        if outcome.kind is ErrorKind.UNAUTHORIZED:
            return failed(
                "mixpanel-credentials",
                f"Mixpanel refused the service account {username} (HTTP 401)",
                f"check {CREDENTIAL_SETTINGS}: the full username (ending in .mp-service-account) and its "
                "secret; a lost secret means a new service account",
            )
        return failed(
            "mixpanel-credentials",
            f"/me failed for {username}: {outcome}",
            f"check {CREDENTIAL_SETTINGS}, and try again later",
        )
    who = f" (Mixpanel user {outcome.user_id})" if outcome.user_id is not None else ""
    return passed("mixpanel-credentials", f"{username}{who} is accepted")


def _describe(org: MeOrganization) -> str:
    return f"{org.id} ({org.name})" if org.name else str(org.id)


def check_organization(settings: Settings, me: Me) -> tuple[CheckResult, MeOrganization | None]:
    listed = ", ".join(_describe(org) for org in me.organizations) or "none"
    configured = settings.mixpanel_organization_id
    if configured is not None:
        org = me.organization(configured)
        if org is None:
            return failed(
                "mixpanel-organization",
                f"MIXPANEL_ORGANIZATION_ID is {configured}, but the bot's account belongs to: {listed}",
                "set MIXPANEL_ORGANIZATION_ID to one of those, or add the account to that organization",
            ), None
        return passed("mixpanel-organization", f"{_describe(org)}, from MIXPANEL_ORGANIZATION_ID"), org
    if not me.organizations:
        return failed(
            "mixpanel-organization",
            "the bot's account belongs to no organization",
            "make the service account in Mixpanel > Organization settings > Service accounts",
        ), None
    if len(me.organizations) > 1:
        return failed(
            "mixpanel-organization",
            f"the bot's account belongs to several organizations: {listed}",
            "set MIXPANEL_ORGANIZATION_ID to the one it serves",
        ), None
    [org] = me.organizations
    return passed(
        "mixpanel-organization", f"{_describe(org)}, the only one the bot's account belongs to"
    ), org


def check_role(org: MeOrganization) -> CheckResult:
    fix = "make it an admin or owner in Mixpanel > Organization settings > Service accounts"
    if org.role is None:
        return warned("mixpanel-role", f"/me does not show the bot's role in organization {org.id}", fix)
    if org.role not in MANAGING_ROLES:
        return failed("mixpanel-role", f'the bot\'s account is "{org.role}" in organization {org.id}', fix)
    return passed(
        "mixpanel-role", f'"{org.role}" in organization {org.id}: it may create and delete accounts'
    )


def check_projects(me: Me, org: MeOrganization) -> CheckResult:
    projects = sorted(
        (p for p in me.projects if p.organization_id == org.id), key=lambda p: p.name.casefold()
    )
    if not projects:
        return failed(
            "mixpanel-projects",
            f"the bot's account sees no project of organization {org.id}: the form would offer none",
            "give the service account access to the projects it should offer (Mixpanel > Project settings)",
        )
    names = ", ".join(p.name for p in projects[:SHOWN_PROJECTS])
    more = f" and {len(projects) - SHOWN_PROJECTS} more" if len(projects) > SHOWN_PROJECTS else ""
    return passed("mixpanel-projects", f"{len(projects)} visible: {names}{more}")


def mixpanel_checks(settings: Settings) -> list[CheckResult]:
    outcome = fetch_me(settings)
    host = check_host(settings, outcome)
    if host.status is Status.FAIL:
        after_host = "needs an answering host (see mixpanel-host)"
        return [host, *(skipped(name, after_host) for name in _AFTER_HOST)]
    credentials = check_credentials(settings, outcome)
    if isinstance(outcome, MixpanelError):
        after_credentials = "needs accepted credentials (see mixpanel-credentials)"
        return [host, credentials, *(skipped(name, after_credentials) for name in _AFTER_CREDENTIALS)]
    organization, org = check_organization(settings, outcome)
    if org is None:
        after_org = "needs the organization (see mixpanel-organization)"
        return [host, credentials, organization, *(skipped(name, after_org) for name in _AFTER_ORGANIZATION)]
    return [host, credentials, organization, check_role(org), check_projects(outcome, org)]


MIXPANEL_CHECKS = (
    "mixpanel-host",
    "mixpanel-credentials",
    "mixpanel-organization",
    "mixpanel-role",
    "mixpanel-projects",
)
_AFTER_HOST = MIXPANEL_CHECKS[1:]
_AFTER_CREDENTIALS = MIXPANEL_CHECKS[2:]
_AFTER_ORGANIZATION = MIXPANEL_CHECKS[3:]
