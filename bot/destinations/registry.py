"""The kinds of secret store, by the `kind:` the policy names. A new kind is one module and one line here."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from bot.destinations.aws import AwsKind
from bot.destinations.base import Destination, Kind, KindConfig
from bot.destinations.github import GitHubKind
from bot.destinations.vault import VaultKind

KINDS: dict[str, type[Kind]] = {
    VaultKind.kind: VaultKind,
    AwsKind.kind: AwsKind,
    GitHubKind.kind: GitHubKind,
}

# Every setting some kind reads its credentials from (held as SecretStr in bot/settings.py).
CREDENTIAL_SETTINGS = (
    "VAULT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_NAMESPACE",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_APP_INSTALLATION_ID",
)
# Of those, the ones that only say who the bot is, not how it proves it: redacting a number such as an App id
# from every log line would garble the logs and protect nothing.
IDENTIFIER_SETTINGS = ("GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID")


class DestinationsError(Exception):
    """Destinations that cannot be used as configured; one line per problem, naming the destination and the
    setting."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def build_destinations(
    entries: list[tuple[str, str, KindConfig]],
    environment: Mapping[str, SecretStr | None],
    *,
    timeout: float,
) -> dict[str, Destination]:
    """The destinations the policy declares (name, kind, keys), with the credentials the settings hold.
    Raises DestinationsError naming each destination whose credentials are missing."""
    problems = []
    for name, kind, config in entries:
        for setting in KINDS[kind].missing_credentials(config, environment):
            problems.append(f"destination {name} ({kind}): {setting}: missing (required)")
    if problems:
        raise DestinationsError(problems)
    return {name: KINDS[kind].build(name, config, environment, timeout) for name, kind, config in entries}
