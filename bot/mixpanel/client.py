"""A small client for Mixpanel's Service Accounts API.

Creating an account is not idempotent and its token is shown once, so this client never retries a create
that might have reached Mixpanel: it raises `MixpanelError` with `ambiguous=True` and leaves reconciliation
to the caller. Reads and deletes are safe to retry and are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from pydantic import SecretStr, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from bot.mixpanel.models import (
    CreatedServiceAccount,
    CreateResponse,
    GetResponse,
    ListResponse,
    Me,
    MeOrganization,
    MeResponse,
    NewServiceAccount,
    ProjectGrant,
    ProjectMember,
    ProjectMembersResponse,
    ServiceAccountRead,
)
from bot.models import Project

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
MAX_REASON_LENGTH = 300


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    INVALID_RESPONSE = "invalid_response"
    API_ERROR = "api_error"


class MixpanelError(Exception):
    """A failed call. `ambiguous` means the request may have been processed anyway."""

    def __init__(
        self,
        kind: ErrorKind,
        *,
        status: int | None = None,
        reason: str | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ):
        self.kind = kind
        self.retry_after = retry_after
        self.status = status
        self.reason = reason
        self.ambiguous = ambiguous
        detail = f" (HTTP {status})" if status else ""
        super().__init__(f"Mixpanel {kind}{detail}: {reason or 'no details'}")


def retry_after_seconds(header: str | None, now: float) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in; None for anything unparseable."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    port = port or _DEFAULT_PORTS.get(scheme)
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def same_origin(target: str, source: str) -> bool:
    """May a redirect from `source` to `target` carry the bot's credentials? Only within one origin."""
    origin = _origin(source)
    return origin is not None and _origin(target) == origin


def _reason_from(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("code")
    if error is None:
        return None
    return " ".join(str(error).split())[:MAX_REASON_LENGTH] or None


_STATUS_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.UNAUTHORIZED,
    403: ErrorKind.FORBIDDEN,
    404: ErrorKind.NOT_FOUND,
    429: ErrorKind.RATE_LIMITED,
}


def _sent_nothing(error: requests.exceptions.ConnectionError) -> bool:
    """True when the connection failed before the request could reach Mixpanel."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)  # requests wraps urllib3's MaxRetryError around the cause
    return isinstance(reason, (NewConnectionError, ConnectTimeoutError))


class MixpanelClient:
    def __init__(
        self,
        base_url: str,
        username: str,
        secret: SecretStr,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 30.0,
        max_rate_limit_wait: float = 30.0,
        read_attempts: int = 4,
        pool_size: int = 64,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        self.base_url = base_url.rstrip("/")
        self._auth = (username, secret.get_secret_value())
        self._timeout = (connect_timeout, read_timeout)
        self._max_rate_limit_wait = max_rate_limit_wait
        self._read_attempts = read_attempts
        self._sleep = sleep
        self._jitter = jitter
        self._session = requests.Session()
        # Mixpanel sits behind a few hosts; a pool per host sized for concurrent creations.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers["User-Agent"] = "mp-service-account-bot"
        self._change_listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every request that may have changed the organization's accounts (any but a
        GET), answered or not: a failed or ambiguous change may have acted all the same."""
        self._change_listeners.append(listener)

    def close(self) -> None:
        self._session.close()

    # --- public API --------------------------------------------------------------------------------

    def me(self) -> Me:
        payload = self._read("GET", "/me", params={"include_workspace_users": "false"})
        try:
            results = MeResponse.model_validate(payload).results
        except ValidationError:
            raise MixpanelError(ErrorKind.INVALID_RESPONSE, reason="unexpected /me response") from None
        try:
            organizations = tuple(
                sorted(
                    (
                        MeOrganization(
                            id=org.id if org.id is not None else int(key), name=org.name, role=org.role
                        )
                        for key, org in results.organizations.items()
                    ),
                    key=lambda org: org.id,
                )
            )
            projects = [
                Project(id=int(key), name=project.name, organization_id=project.organization_id)
                for key, project in results.projects.items()
            ]
        except ValueError:  # a key that is not a number
            raise MixpanelError(ErrorKind.INVALID_RESPONSE, reason="unexpected /me response") from None
        return Me(
            organization_ids=[org.id for org in organizations],
            projects=projects,
            organizations=organizations,
            user_id=results.id if results.id is not None else results.user_id,
        )

    def create_service_account(
        self, organization_id: int, account: NewServiceAccount
    ) -> CreatedServiceAccount:
        path = f"/organizations/{int(organization_id)}/service-accounts"
        payload = self._call_once_with_rate_limit("POST", path, json=account.to_json())
        try:
            return CreateResponse.model_validate(payload).results
        except ValidationError:
            # The account may exist even though we cannot read its answer.
            raise MixpanelError(
                ErrorKind.INVALID_RESPONSE, reason="unexpected create response", ambiguous=True
            ) from None

    def list_service_accounts(self, organization_id: int) -> list[ServiceAccountRead]:
        payload = self._read("GET", f"/organizations/{int(organization_id)}/service-accounts")
        try:
            return ListResponse.model_validate(payload).results
        except ValidationError:
            raise MixpanelError(ErrorKind.INVALID_RESPONSE, reason="unexpected list response") from None

    def delete_service_account(self, organization_id: int, account_id: int) -> None:
        path = f"/organizations/{int(organization_id)}/service-accounts/{int(account_id)}"
        try:
            self._read("DELETE", path)
        except MixpanelError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return  # already gone: the goal of a delete is reached
            raise

    def delete_if_present(self, organization_id: int, account_id: int) -> bool:
        """Delete the account; False when Mixpanel says it was already gone (deleted elsewhere)."""
        path = f"/organizations/{int(organization_id)}/service-accounts/{int(account_id)}"
        try:
            self._read("DELETE", path)
        except MixpanelError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return False
            raise
        return True

    def get_service_account(self, organization_id: int, account_id: int) -> ServiceAccountRead | None:
        """One account, or None when Mixpanel does not know it (any more)."""
        path = f"/organizations/{int(organization_id)}/service-accounts/{int(account_id)}"
        try:
            payload = self._read("GET", path)
        except MixpanelError as error:
            if error.kind is ErrorKind.NOT_FOUND:
                return None
            raise
        try:
            return GetResponse.model_validate(payload).results
        except ValidationError:
            raise MixpanelError(ErrorKind.INVALID_RESPONSE, reason="unexpected get response") from None

    def add_to_projects(
        self, organization_id: int, account_ids: list[int], grants: tuple[ProjectGrant, ...]
    ) -> None:
        """Membership is idempotent, so a lost answer is safely retried like a read."""
        body = {
            "service_account_ids": [int(i) for i in account_ids],
            "projects": [{"id": int(grant.id), "role": str(grant.role)} for grant in grants],
        }
        self._read(
            "POST", f"/organizations/{int(organization_id)}/service-accounts/add-to-project", json=body
        )

    def remove_from_projects(
        self, organization_id: int, account_ids: list[int], project_ids: list[int]
    ) -> None:
        # The same change as add_to_projects, but Mixpanel wants the ids nested per project here.
        body = {
            "projects": [
                {"id": int(project_id), "service_account_ids": [int(i) for i in account_ids]}
                for project_id in project_ids
            ]
        }
        self._read(
            "POST", f"/organizations/{int(organization_id)}/service-accounts/remove-from-project", json=body
        )

    def list_project_service_accounts(self, project_id: int) -> list[ProjectMember]:
        payload = self._read("GET", f"/projects/{int(project_id)}/service-accounts")
        try:
            return ProjectMembersResponse.model_validate(payload).results
        except ValidationError:
            raise MixpanelError(
                ErrorKind.INVALID_RESPONSE, reason="unexpected project list response"
            ) from None

    # --- transport ---------------------------------------------------------------------------------

    def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        """Idempotent calls: retried on 429, 5xx, timeouts and connection failures."""
        waited = 0.0
        for attempt in range(1, self._read_attempts + 1):
            try:
                return self._send(method, path, **kwargs)
            except MixpanelError as error:
                retryable = error.kind in (
                    ErrorKind.RATE_LIMITED,
                    ErrorKind.SERVER_ERROR,
                    ErrorKind.TIMEOUT,
                    ErrorKind.CONNECTION,
                    ErrorKind.INVALID_RESPONSE,
                )
                if not retryable or attempt == self._read_attempts:
                    raise
                delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
                if waited + delay > self._max_rate_limit_wait:
                    raise
                log.info("Mixpanel %s %s failed (%s); retrying in %.1fs", method, path, error.kind, delay)
                self._sleep(delay)
                waited += delay
        raise AssertionError("unreachable")

    def _call_once_with_rate_limit(self, method: str, path: str, **kwargs: Any) -> Any:
        """Non-idempotent calls: retried only when Mixpanel certainly did not act on them."""
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(method, path, **kwargs)
            except MixpanelError as error:
                if error.ambiguous or attempt >= self._read_attempts:
                    raise
                if error.kind is ErrorKind.RATE_LIMITED:
                    delay = error.retry_after if error.retry_after is not None else self._backoff(attempt)
                elif error.kind is ErrorKind.CONNECTION:
                    delay = self._backoff(attempt)
                else:
                    raise
                if waited + delay > self._max_rate_limit_wait:
                    raise
                log.info(
                    "Mixpanel %s %s not processed (%s); retrying in %.1fs", method, path, error.kind, delay
                )
                self._sleep(delay)
                waited += delay

    def _backoff(self, attempt: int) -> float:
        return min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + self._jitter())

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._exchange(method, path, **kwargs)
        finally:
            if method != "GET":
                for listener in self._change_listeners:
                    listener()

    def _exchange(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        for _ in range(MAX_REDIRECTS + 1):
            response = self._transport(method, url, **kwargs)
            location = response.headers.get("Location")
            if response.status_code in (301, 302, 303, 307, 308) and location:
                target = urljoin(url, location)
                if not same_origin(target, url):
                    # Never send the bot's credentials elsewhere, nor in clear text after a downgrade to http.
                    raise MixpanelError(
                        ErrorKind.INVALID_RESPONSE,
                        status=response.status_code,
                        reason="redirected to another scheme, host or port",
                    )
                url = target  # keep method and body: some routes only add a trailing slash
                continue
            return self._interpret(response, method)
        raise MixpanelError(
            ErrorKind.INVALID_RESPONSE, reason="too many redirects", ambiguous=method == "POST"
        )

    def _transport(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        mutating = method == "POST"
        try:
            return self._session.request(
                method, url, auth=self._auth, timeout=self._timeout, allow_redirects=False, **kwargs
            )
        except requests.exceptions.ConnectionError as error:
            if _sent_nothing(error):
                raise MixpanelError(ErrorKind.CONNECTION, reason="could not connect") from None
            raise MixpanelError(
                ErrorKind.CONNECTION, reason="connection dropped", ambiguous=mutating
            ) from None
        except requests.exceptions.Timeout:
            raise MixpanelError(ErrorKind.TIMEOUT, reason="no answer in time", ambiguous=mutating) from None
        except requests.exceptions.RequestException as error:
            raise MixpanelError(
                ErrorKind.CONNECTION, reason=type(error).__name__, ambiguous=mutating
            ) from None

    def _interpret(self, response: requests.Response, method: str) -> Any:
        mutating = method == "POST"
        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        reason = _reason_from(payload)
        if status >= 500:
            raise MixpanelError(
                ErrorKind.SERVER_ERROR, status=status, reason=reason or "server error", ambiguous=mutating
            )
        if status in _STATUS_KINDS:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            raise MixpanelError(_STATUS_KINDS[status], status=status, reason=reason, retry_after=retry_after)
        if status >= 400:
            raise MixpanelError(ErrorKind.BAD_REQUEST, status=status, reason=reason)
        if payload is None:
            raise MixpanelError(
                ErrorKind.INVALID_RESPONSE,
                status=status,
                reason="the answer was not JSON",
                ambiguous=mutating,
            )
        if isinstance(payload, dict) and payload.get("status") == "error":
            # Mixpanel sometimes reports errors with HTTP 200; the request was refused, not processed.
            raise MixpanelError(ErrorKind.API_ERROR, status=status, reason=reason)
        return payload
