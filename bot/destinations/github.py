"""GitHub Actions secrets of a repository, or of one of its environments, through GitHub's REST API.

Policy keys: `repository` (owner/name), an optional `environment`, `secret_name_prefix`, an optional
`api_url` (GitHub Enterprise Server, or a test server). Credentials: GITHUB_TOKEN, or a GitHub App
(bot/destinations/github_auth.py). Values are encrypted
with the repository's (or environment's) public key as a libsodium sealed box (PyNaCl), as GitHub's REST
docs require. GitHub never gives a value back, so a write is verified by the secret's metadata; the bot's
mark is its own database record (the destination, the secret name and when the write began).
"""

from __future__ import annotations

import logging
from base64 import b64decode, b64encode
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import requests
from nacl.exceptions import CryptoError
from nacl.public import PublicKey, SealedBox
from pydantic import Field, SecretStr, field_validator

from bot.destinations import github_auth
from bot.destinations.base import (
    DestinationError,
    Failure,
    KindConfig,
    Receipt,
    Replaced,
    SecretDocument,
    https_unless_loopback,
    nothing_sent,
)
from bot.destinations.github_auth import API_VERSION, Credentials

log = logging.getLogger(__name__)

# GitHub's clock and ours may differ; a secret updated this long before the write began still counts.
CLOCK_SKEW = timedelta(seconds=5)


class GitHubConfig(KindConfig):
    kind: Literal["github_actions"] = "github_actions"
    repository: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    environment: str | None = Field(default=None, pattern=r"^[^/\s][^/]{0,254}$")
    secret_name_prefix: str = Field(default="MP_", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    api_url: str = Field(default="https://api.github.com", pattern=r"^https?://\S+$")

    @field_validator("repository", "environment")
    @classmethod
    def _no_dot_segments(cls, value: str | None) -> str | None:
        # "." and ".." would be resolved by the HTTP client as path segments, leaving the repository's URL.
        if value is not None and any(part.strip(".") == "" for part in value.split("/")):
            raise ValueError("must not be '.' or '..'")
        return value

    @field_validator("secret_name_prefix")
    @classmethod
    def _not_githubs(cls, prefix: str) -> str:
        # GitHub refuses names starting with GITHUB_; an empty prefix would let "github-x" become one.
        if not prefix or prefix.upper().startswith("GITHUB"):
            raise ValueError("must be set, and must not start with GITHUB")
        return prefix

    @field_validator("api_url")
    @classmethod
    def _no_clear_text(cls, url: str | None) -> str | None:
        return https_unless_loopback(url)


def _failure_of_status(status: int, *, what: str) -> DestinationError:
    if status in (401, 403):
        return DestinationError(Failure.FORBIDDEN, f"GitHub answered {status} to {what}")
    if status == 404:
        return DestinationError(
            Failure.FORBIDDEN, f"GitHub answered 404 to {what} (no such repository, or no access)"
        )
    if status >= 500 or status == 429:
        return DestinationError(Failure.UNREACHABLE, f"GitHub answered {status} to {what}")
    return DestinationError(Failure.REJECTED, f"GitHub answered {status} to {what}")


class GitHubDestination:
    label = "GitHub Actions"

    def __init__(
        self,
        name: str,
        config: GitHubConfig,
        credentials: Credentials,
        timeout: float,
        session: requests.Session | None = None,
    ):
        self.name = name
        self.config = config
        self._credentials = credentials
        self._timeout = timeout
        self._session = session or requests.Session()
        self._repository_id: int | None = None

    # --- names ---------------------------------------------------------------------------------------

    def secret_names(self, secret_name: str) -> tuple[str, str]:
        """The two secrets one account becomes: <PREFIX><NAME>_USERNAME and <PREFIX><NAME>_SECRET."""
        base = self.config.secret_name_prefix + secret_name.upper().replace("-", "_")
        return f"{base}_USERNAME", f"{base}_SECRET"

    def location(self, secret_name: str) -> str:
        where = self.config.repository
        if self.config.environment:
            where += f" environment {self.config.environment}"
        username, secret = self.secret_names(secret_name)
        return f"{where}: {username} and {secret}"

    # --- HTTP ----------------------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, what: str, sent: bool = False, **kwargs: Any
    ) -> requests.Response:
        answer = self._send(method, path, what=what, sent=sent, **kwargs)
        if answer.status_code == 401 and self._credentials.forget():
            # An App's installation token GitHub no longer takes (revoked, or our clock is off): a 401 means
            # nothing was done, so one more try with a fresh token cannot write twice.
            answer = self._send(method, path, what=what, sent=sent, **kwargs)
        return answer

    def _send(self, method: str, path: str, *, what: str, sent: bool, **kwargs: Any) -> requests.Response:
        headers = {
            "Authorization": self._credentials.authorization(),
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        try:
            return self._session.request(
                method,
                self.config.api_url.rstrip("/") + path,
                headers=headers,
                timeout=self._timeout,
                **kwargs,
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
            if isinstance(error, requests.exceptions.ConnectionError) and nothing_sent(error):
                raise DestinationError(Failure.UNREACHABLE, type(error).__name__) from None
            # Sent, and no answer came: a write may have landed.
            raise DestinationError(
                Failure.OUTCOME_UNKNOWN if sent else Failure.UNREACHABLE, f"no answer from GitHub to {what}"
            ) from None
        except requests.RequestException as error:
            raise DestinationError(Failure.UNREACHABLE, type(error).__name__) from None

    def _secrets_path(self) -> str:
        if not self.config.environment:
            return f"/repos/{self.config.repository}/actions/secrets"
        if self._repository_id is None:
            answer = self._call("GET", f"/repos/{self.config.repository}", what="the repository")
            if answer.status_code != 200:
                raise _failure_of_status(answer.status_code, what="the repository")
            self._repository_id = int(answer.json()["id"])
        # Quoted whole: an environment's name may hold characters ("?", "#", "%", "..") that would change the
        # URL's meaning.
        environment = quote(self.config.environment, safe="")
        return f"/repositories/{self._repository_id}/environments/{environment}/secrets"

    def _public_key(self) -> tuple[str, PublicKey]:
        answer = self._call("GET", self._secrets_path() + "/public-key", what="the public key")
        if answer.status_code != 200:
            failure = _failure_of_status(answer.status_code, what="the public key")
            if failure.failure is Failure.REJECTED:
                raise DestinationError(Failure.KEY_UNAVAILABLE, failure.detail)
            raise failure
        try:
            body = answer.json()
            return str(body["key_id"]), PublicKey(b64decode(body["key"]))
        except (ValueError, KeyError, TypeError, CryptoError):
            raise DestinationError(Failure.KEY_UNAVAILABLE, "GitHub's public key could not be used") from None

    def _updated_at(self, name: str) -> datetime | None:
        answer = self._call("GET", f"{self._secrets_path()}/{name}", what="a secret's metadata")
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise _failure_of_status(answer.status_code, what="a secret's metadata")
        try:
            return datetime.fromisoformat(answer.json()["updated_at"].replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DestinationError(Failure.REJECTED, "GitHub's secret metadata could not be read") from None

    # --- the interface -------------------------------------------------------------------------------

    def exists(self, secret_name: str) -> bool:
        return any(self._updated_at(name) is not None for name in self.secret_names(secret_name))

    def write(
        self, secret_name: str, document: SecretDocument, *, replacing: Replaced | None = None
    ) -> Receipt:
        # GitHub has no check-and-set: look first (a race in the moment between is possible, and said so in
        # docs/destinations.md). A replacement overwrites the two secrets the bot's record says it wrote.
        if replacing is None and self.exists(secret_name):
            raise DestinationError(Failure.TAKEN, "a secret of that name exists")
        key_id, key = self._public_key()
        box = SealedBox(key)
        username_name, secret_name_full = self.secret_names(secret_name)
        self._put(box, key_id, username_name, document.username)
        try:
            self._put(box, key_id, secret_name_full, document.secret.get_secret_value())
        except DestinationError as error:
            # The username landed, the secret did not: for a Replace…, put the old username back, so that
            # the pair still works (the old account lives on). Unknown outcomes are left to the read-back.
            if replacing is not None and replacing.username and error.failure is not Failure.OUTCOME_UNKNOWN:
                self._restore(box, key_id, username_name, replacing.username)
            raise
        return Receipt(version=None)

    def _put(self, box: SealedBox, key_id: str, name: str, value: str) -> None:
        encrypted = b64encode(box.encrypt(value.encode())).decode()
        answer = self._call(
            "PUT",
            f"{self._secrets_path()}/{name}",
            what="writing a secret",
            sent=True,
            json={"encrypted_value": encrypted, "key_id": key_id},
        )
        if answer.status_code not in (201, 204):
            raise _failure_of_status(answer.status_code, what="writing a secret")

    def _restore(self, box: SealedBox, key_id: str, name: str, value: str) -> None:
        try:
            self._put(box, key_id, name, value)
        except DestinationError as error:
            log.error(
                "GitHub %s: %s could not be put back to the old account's username (%s); the pair is "
                "inconsistent until the next Replace…",
                self.name,
                name,
                error.failure,
            )

    def verify(
        self, secret_name: str, receipt: Receipt, document: SecretDocument, *, since: datetime
    ) -> bool:
        return self.find_mark(secret_name, document.account_id, since=since) is not None

    def find_mark(self, secret_name: str, account_id: int, *, since: datetime) -> Receipt | None:
        """Both secrets updated since the write began (our record is the mark: GitHub keeps none)."""
        threshold = since - CLOCK_SKEW
        for name in self.secret_names(secret_name):
            updated = self._updated_at(name)
            if updated is None or updated < threshold:
                return None
        return Receipt(version=None)

    def describe(self, secret_name: str, receipt: Receipt | None) -> str:
        return f"GitHub Actions {self.name} at {self.location(secret_name)}"

    def check(self) -> list[str]:
        try:
            self._public_key()
            answer = self._call("GET", f"/repos/{self.config.repository}", what="the repository")
        except DestinationError as error:
            return [f"the public key is not readable ({error.detail or error.failure})"]
        permissions = (answer.json() or {}).get("permissions") if answer.status_code == 200 else None
        if isinstance(permissions, dict) and not (permissions.get("admin") or permissions.get("push")):
            return ["the token may read the repository but not write its secrets"]
        return []


class GitHubKind:
    kind: ClassVar[str] = "github_actions"
    config: ClassVar[type[KindConfig]] = GitHubConfig

    @staticmethod
    def missing_credentials(config: Any, environment: Mapping[str, SecretStr | None]) -> list[str]:
        return github_auth.missing_credentials(environment)

    @staticmethod
    def build(
        name: str, config: Any, environment: Mapping[str, SecretStr | None], timeout: float
    ) -> GitHubDestination:
        session = requests.Session()
        credentials = github_auth.credentials_from(
            environment, api_url=config.api_url, session=session, timeout=timeout
        )
        return GitHubDestination(name, config, credentials, timeout, session)
