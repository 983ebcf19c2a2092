"""doctor: each policy destination, with the bot's own credentials, writing nothing.

Vault: capabilities-self on the prefix; AWS: sts get-caller-identity and a dry look-up under the prefix;
GitHub: the public key is readable and the token may write secrets (bot/destinations/*.py `check`).
"""

from __future__ import annotations

from bot.destinations.registry import KINDS
from bot.doctor.report import CheckResult, failed, passed
from bot.policy.file import Policy
from bot.settings import Settings


def destination_checks(policy: Policy, settings: Settings) -> list[CheckResult]:
    results = []
    credentials = settings.destination_credentials()
    for entry in policy.destinations:
        name = f"destination:{entry.name}"
        kind = KINDS[entry.kind]
        missing = kind.missing_credentials(entry.config, credentials)
        if missing:
            results.append(
                failed(name, f"{', '.join(missing)}: missing", "set it in the environment or .env")
            )
            continue
        destination = kind.build(entry.name, entry.config, credentials, settings.destination_timeout)
        problems = destination.check()
        if problems:
            fix = "grant the bot what docs/destinations.md lists for this kind"
            results.append(failed(name, "; ".join(problems), fix))
        else:
            results.append(passed(name, f"{destination.label}: the bot may write under its prefix"))
    return results
