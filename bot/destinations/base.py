"""The interface of a secret store, and what is written to it.

A kind is one module that defines a `Kind`: its policy keys (a strict pydantic model), the credentials it
reads from the environment, and how to build a `Destination` from both. Nothing here performs I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol
from urllib.parse import urlparse

import requests
from pydantic import BaseModel, ConfigDict, SecretStr
from urllib3.exceptions import NewConnectionError

# What a requester may type as a secret name: no slash, dot or space, so a name can never leave the
# destination's prefix (`../x`, `a/b`) and means the same thing in every store.
SECRET_NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
SECRET_NAME_RULE = "lowercase letters, digits and dashes, starting with a letter, at most 63 characters"  # noqa: S105 - a rule, not a secret

# The bot's mark beside every secret it writes (Vault custom_metadata, AWS tags): a secret without it was
# not written by the bot, and the bot never overwrites it.
MARK_WRITER = "mp-service-account"
MARK_KEY_WRITER = "written-by"
MARK_KEY_ACCOUNT = "mixpanel-account-id"


def mark_for(account_id: int) -> dict[str, str]:
    return {MARK_KEY_WRITER: MARK_WRITER, MARK_KEY_ACCOUNT: str(account_id)}


def bears_mark(mark: Mapping[str, Any] | None, account_id: int | None = None) -> bool:
    """Did the bot write this (for `account_id`, when given)?"""
    if not mark or mark.get(MARK_KEY_WRITER) != MARK_WRITER:
        return False
    return account_id is None or mark.get(MARK_KEY_ACCOUNT) == str(account_id)


def nothing_sent(error: requests.exceptions.ConnectionError) -> bool:
    """Did this connection error happen before the request left (refused, unresolvable, connect timeout)?
    Otherwise (the connection dropped after sending) a write may have landed."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    reason = error.args[0] if error.args else None
    return isinstance(getattr(reason, "reason", reason), NewConnectionError)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def https_unless_loopback(url: str | None) -> str | None:
    """A store's URL: https, or plain http to this machine only (a test server, a local agent or proxy):
    the bot's credentials and the token must never cross a network in clear."""
    if url is None:
        return None
    parsed = urlparse(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in LOOPBACK_HOSTS):
        return url
    raise ValueError("must be https (plain http only to 127.0.0.1, ::1 or localhost)")


class KindConfig(BaseModel):
    """A kind's own keys in the policy's `destinations:` entry; an unknown key is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class SecretDocument:
    """What the bot writes: everything a machine needs to call Mixpanel as the new account."""

    username: str
    secret: SecretStr = field(repr=False)
    api_base: str
    organization_id: int
    account_id: int
    expires_at: datetime | None

    def fields(self) -> dict[str, str | int | None]:
        return {
            "username": self.username,
            "secret": self.secret.get_secret_value(),
            "api_base": self.api_base,
            "organization_id": self.organization_id,
            "account_id": self.account_id,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    def as_json(self) -> str:
        return json.dumps(self.fields(), sort_keys=True)


class Failure(StrEnum):
    """Why a store refused; each has one sentence in bot/create/messages.py."""

    FORBIDDEN = "forbidden"  # 401/403: outside the bot's permissions in that store
    UNREACHABLE = "unreachable"  # nothing was sent, or the store said it is unavailable
    TAKEN = "taken"  # a secret of that name exists (and is not the bot's to overwrite)
    KEY_UNAVAILABLE = "key_unavailable"  # GitHub's public key, or AWS's KMS key, cannot be used
    MISMATCH = "mismatch"  # read back, the store holds something else than what was written
    OUTCOME_UNKNOWN = "outcome_unknown"  # sent, but no answer (a timeout): settle it by reading back
    REJECTED = "rejected"  # any other refusal


class DestinationError(Exception):
    def __init__(self, failure: Failure, detail: str = ""):
        super().__init__(f"{failure}: {detail}" if detail else str(failure))
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True)
class Replaced:
    """For a Replace…: the account the bot wrote into that secret before, which the new one replaces."""

    account_id: int
    username: str | None  # its full username (GitHub keeps it in <NAME>_USERNAME, to restore on failure)


@dataclass(frozen=True)
class Receipt:
    """What a store said about a write: the version it became (None where the store has no versions)."""

    version: str | None


class Destination(Protocol):
    name: str  # the policy's name for it, shown in the form ("etl-vault")
    label: str  # the kind, for people ("Vault", "AWS Secrets Manager", "GitHub Actions")

    def location(self, secret_name: str) -> str:
        """Where `secret_name` lives in the store, under the configured prefix."""

    def exists(self, secret_name: str) -> bool:
        """Is anything stored under that name? Raises DestinationError when the store cannot say."""

    def write(
        self, secret_name: str, document: SecretDocument, *, replacing: Replaced | None = None
    ) -> Receipt:
        """Create the secret (refused with TAKEN if the name exists), or, with `replacing` (the account the
        bot wrote there before), write a new version over the bot's own secret only."""

    def verify(
        self, secret_name: str, receipt: Receipt, document: SecretDocument, *, since: datetime
    ) -> bool:
        """Read the write back: does the store now hold `document` (GitHub: metadata newer than `since`)?"""

    def find_mark(self, secret_name: str, account_id: int, *, since: datetime) -> Receipt | None:
        """The bot's write for `account_id`, if the store holds it (after a timeout or a crash)."""

    def describe(self, secret_name: str, receipt: Receipt | None) -> str:
        """Where it is, for people: "Vault etl-vault at secret/mixpanel/etl-nightly (version 1)"."""

    def check(self) -> list[str]:
        """Problems with the bot's own access, found without writing anything (for doctor)."""


class Kind(Protocol):
    """One kind of store: its keys, its credentials, and how to build one."""

    kind: ClassVar[str]
    config: ClassVar[type[KindConfig]]

    @staticmethod
    def missing_credentials(config: Any, environment: Mapping[str, SecretStr | None]) -> list[str]:
        """The settings that must be set for this destination and are not (empty: ready)."""

    @staticmethod
    def build(
        name: str, config: Any, environment: Mapping[str, SecretStr | None], timeout: float
    ) -> Destination:
        """A destination, given its policy keys and the credentials the settings hold."""
