"""How the bot authenticates to GitHub: a token (GITHUB_TOKEN), or a GitHub App installation.

A GitHub App (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY, GITHUB_APP_INSTALLATION_ID) signs a short JWT with its
private key (RS256, with `cryptography`), and exchanges it at `POST /app/installations/{id}/access_tokens`
for an installation token, which expires within an hour. The token is kept until shortly before its expiry,
so that a create does not pay for an exchange. Neither the key, the JWT nor the token is ever put into an
exception or a log line; the installation token is pinned in the redactor the moment it arrives.
"""

from __future__ import annotations

import json
import threading
from base64 import urlsafe_b64encode
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from bot.destinations.base import DestinationError, Failure
from bot.redaction import redactor

TOKEN = "GITHUB_TOKEN"  # noqa: S105 - the setting's name
APP_ID = "GITHUB_APP_ID"
APP_PRIVATE_KEY = "GITHUB_APP_PRIVATE_KEY"
APP_INSTALLATION_ID = "GITHUB_APP_INSTALLATION_ID"
APP_SETTINGS = (APP_ID, APP_PRIVATE_KEY, APP_INSTALLATION_ID)
API_VERSION = "2022-11-28"
# GitHub refuses a JWT that lives longer than 10 minutes, or whose iat is in its future: backdate it a
# minute against clock drift, as GitHub's docs advise.
JWT_BACKDATE = timedelta(seconds=60)
JWT_LIFETIME = timedelta(minutes=9)
# An installation token is used until this long before GitHub's expires_at, so that none expires mid-create.
REFRESH_BEFORE_EXPIRY = timedelta(minutes=5)


class Credentials(Protocol):
    def authorization(self) -> str:
        """The Authorization header's value. Raises DestinationError when none can be had."""

    def forget(self) -> bool:
        """GitHub refused the last one (401): the next `authorization` must not use it again. False when
        there is no other to have (a static token): asking again would only be refused again."""


class TokenCredentials:
    def __init__(self, token: SecretStr):
        self._token = token

    def authorization(self) -> str:
        return f"Bearer {self._token.get_secret_value()}"

    def forget(self) -> bool:
        return False  # a static token cannot be renewed


def _b64url(raw: bytes) -> str:
    return urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_private_key(pem: SecretStr) -> rsa.RSAPrivateKey | None:
    """The App's RSA private key; None when it is not a PEM RSA key. A PEM given on one line with literal
    `\\n` (as many hosting platforms' settings force) is accepted too."""
    text = pem.get_secret_value().strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: datetime) -> str:
    """A JWT that authenticates as the App itself (RS256), valid for JWT_LIFETIME."""
    header = {"alg": "RS256", "typ": "JWT"}
    claims = {
        "iat": int((now - JWT_BACKDATE).timestamp()),
        "exp": int((now + JWT_LIFETIME).timestamp()),
        "iss": app_id,
    }
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


class AppCredentials:
    """Installation tokens of a GitHub App, exchanged on first use and again shortly before each expires.
    Thread-safe: concurrent creates share one exchange."""

    def __init__(
        self,
        *,
        app_id: str,
        key: rsa.RSAPrivateKey,
        installation_id: str,
        api_url: str,
        session: requests.Session,
        timeout: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._app_id = app_id
        self._key = key
        self._installation_id = installation_id
        self._api_url = api_url.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: SecretStr | None = None
        self._expires_at: datetime | None = None

    def authorization(self) -> str:
        with self._lock:
            now = self._clock()
            if (
                self._token is None
                or self._expires_at is None
                or now >= self._expires_at - REFRESH_BEFORE_EXPIRY
            ):
                self._token, self._expires_at = self._exchange(now)
            return f"Bearer {self._token.get_secret_value()}"

    def forget(self) -> bool:
        with self._lock:
            self._token = self._expires_at = None
        return True

    def _exchange(self, now: datetime) -> tuple[SecretStr, datetime]:
        what = "the App's installation token"
        try:
            answer = self._session.post(
                f"{self._api_url}/app/installations/{self._installation_id}/access_tokens",
                headers={
                    "Authorization": f"Bearer {app_jwt(self._app_id, self._key, now)}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                },
                timeout=self._timeout,
            )
        except requests.RequestException as error:
            # Nothing is written by an exchange: whatever happened, the store was not reached for the write.
            raise DestinationError(Failure.UNREACHABLE, f"{type(error).__name__} asking for {what}") from None
        if answer.status_code in (401, 403, 404):
            raise DestinationError(Failure.FORBIDDEN, f"GitHub answered {answer.status_code} to {what}")
        if answer.status_code != 201:
            failure = Failure.UNREACHABLE if answer.status_code >= 500 else Failure.REJECTED
            raise DestinationError(failure, f"GitHub answered {answer.status_code} to {what}")
        try:
            body = answer.json()
            token = str(body["token"])
            expires_at = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError):
            raise DestinationError(
                Failure.REJECTED, f"GitHub's answer with {what} could not be read"
            ) from None
        redactor.pin(token)
        return SecretStr(token), expires_at


def missing_credentials(environment: Mapping[str, SecretStr | None]) -> list[str]:
    """Empty when a GitHub App (all three settings, a usable key) or GITHUB_TOKEN is set."""
    app = {name: environment.get(name) for name in APP_SETTINGS}
    if any(app.values()):
        missing = [name for name, value in app.items() if not value]
        key = app[APP_PRIVATE_KEY]
        if key is not None and load_private_key(key) is None:
            missing.append(f"{APP_PRIVATE_KEY} (not a PEM RSA private key)")
        for name in (APP_ID, APP_INSTALLATION_ID):
            value = app[name]
            if value is not None and not value.get_secret_value().strip().isdigit():
                missing.append(f"{name} (a number)")  # it goes into a URL path: nothing else may
        return missing
    return [] if environment.get(TOKEN) else [f"{TOKEN}, or {', '.join(APP_SETTINGS)}"]


def credentials_from(
    environment: Mapping[str, SecretStr | None], *, api_url: str, session: requests.Session, timeout: float
) -> Credentials:
    """The App where one is configured (its tokens are short-lived), else GITHUB_TOKEN."""
    app_id, key, installation = (environment.get(name) for name in APP_SETTINGS)
    if app_id and key and installation:
        loaded = load_private_key(key)
        if loaded is None:
            raise ValueError(f"{APP_PRIVATE_KEY} is not a PEM RSA private key")  # missing_credentials says so
        return AppCredentials(
            app_id=app_id.get_secret_value().strip(),
            key=loaded,
            installation_id=installation.get_secret_value().strip(),
            api_url=api_url,
            session=session,
            timeout=timeout,
        )
    token = environment.get(TOKEN)
    if token is None:
        raise ValueError(f"{TOKEN} is missing")  # missing_credentials is asked first
    return TokenCredentials(token)
