"""HashiCorp Vault KV version 2, through hvac.

Policy keys: `url`, `mount`, `path_prefix`. Credentials: VAULT_TOKEN, or AppRole (VAULT_ROLE_ID and
VAULT_SECRET_ID); VAULT_NAMESPACE where set. A new secret is written with `cas: 0` (only if the path does
not exist), a replacement with `cas` on the version the bot last wrote, so that a secret changed by
someone else in between is never overwritten. The bot's mark goes into the key's `custom_metadata`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar

import hvac
import requests
from hvac import exceptions as vault_errors
from pydantic import Field, SecretStr, field_validator

from bot.destinations.base import (
    DestinationError,
    Failure,
    KindConfig,
    Receipt,
    Replaced,
    SecretDocument,
    bears_mark,
    https_unless_loopback,
    mark_for,
    nothing_sent,
)
from bot.redaction import redactor

TOKEN = "VAULT_TOKEN"  # noqa: S105 - the setting's name
ROLE_ID = "VAULT_ROLE_ID"
SECRET_ID = "VAULT_SECRET_ID"  # noqa: S105 - the setting's name
NAMESPACE = "VAULT_NAMESPACE"
# What the bot needs on its prefix: create and read for a new secret, update for a new version.
NEEDED_CAPABILITIES = ("create", "read", "update")

T = TypeVar("T")

log = logging.getLogger(__name__)


class VaultConfig(KindConfig):
    kind: Literal["vault_kv2"] = "vault_kv2"
    url: str = Field(pattern=r"^https?://[^\s/]+")
    mount: str = Field(default="secret", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")
    path_prefix: str = Field(default="mixpanel/", pattern=r"^([A-Za-z0-9_-]+/)*$")

    @field_validator("url")
    @classmethod
    def _no_clear_text(cls, url: str | None) -> str | None:
        return https_unless_loopback(url)


def _failure(error: Exception, *, sent: bool) -> DestinationError:
    """An hvac or requests error as a Failure. A timeout after sending is OUTCOME_UNKNOWN."""
    if isinstance(error, vault_errors.Forbidden | vault_errors.Unauthorized):
        return DestinationError(Failure.FORBIDDEN, "Vault answered 403")
    if isinstance(error, requests.exceptions.ConnectionError) and nothing_sent(error):
        return DestinationError(Failure.UNREACHABLE, type(error).__name__)
    if isinstance(error, requests.exceptions.Timeout | requests.exceptions.ConnectionError):
        # Sent, and no answer came: a write may have landed.
        return DestinationError(
            Failure.OUTCOME_UNKNOWN if sent else Failure.UNREACHABLE, "no answer from Vault"
        )
    if isinstance(error, vault_errors.VaultDown | vault_errors.BadGateway | vault_errors.InternalServerError):
        return DestinationError(Failure.UNREACHABLE, f"Vault answered {type(error).__name__}")
    return DestinationError(Failure.REJECTED, type(error).__name__)


class VaultDestination:
    label = "Vault"

    def __init__(
        self, name: str, config: VaultConfig, client: hvac.Client, login: Callable[[], None] | None = None
    ):
        self.name = name
        self.config = config
        self._client = client
        self._login = login
        self._login_lock = threading.Lock()

    def _authenticated(self) -> hvac.Client:
        """AppRole logs in on first use, not at start: a Vault that is down must not stop the bot, only this
        destination. One login at a time: concurrent creates share it."""
        if self._login is not None and not self._client.token:
            with self._login_lock:
                if not self._client.token:
                    try:
                        self._login()
                    except (vault_errors.VaultError, requests.RequestException) as error:
                        raise _failure(error, sent=False) from None
                    redactor.pin(self._client.token)
        return self._client

    def _as_bot(self, call: Callable[[Any], T]) -> T:
        """`call` with the KV v2 API. An AppRole token Vault no longer takes (its TTL ran out, or it was
        revoked) answers 403: log in again and try once more. A 403 means Vault did nothing, so the second
        try cannot write twice. A static VAULT_TOKEN cannot be renewed: its 403 stands."""
        try:
            return call(self._authenticated().secrets.kv.v2)
        except vault_errors.Forbidden:
            if self._login is None:
                raise
            self._client.token = None
            return call(self._authenticated().secrets.kv.v2)

    def _path(self, secret_name: str) -> str:
        return self.config.path_prefix + secret_name

    def location(self, secret_name: str) -> str:
        return f"{self.config.mount}/{self._path(secret_name)}"

    def _metadata(self, secret_name: str) -> dict[str, Any] | None:
        try:
            answer = self._as_bot(
                lambda kv: kv.read_secret_metadata(self._path(secret_name), mount_point=self.config.mount)
            )
        except vault_errors.InvalidPath:
            return None
        except (vault_errors.VaultError, requests.RequestException) as error:
            raise _failure(error, sent=False) from None
        return answer.get("data") or {}

    def _read(self, secret_name: str, version: int | None = None) -> tuple[dict[str, Any], int] | None:
        try:
            answer = self._as_bot(
                lambda kv: kv.read_secret_version(
                    self._path(secret_name),
                    version=version,
                    mount_point=self.config.mount,
                    raise_on_deleted_version=True,
                )
            )
        except vault_errors.InvalidPath:
            return None
        except (vault_errors.VaultError, requests.RequestException) as error:
            raise _failure(error, sent=False) from None
        data = answer.get("data") or {}
        return data.get("data") or {}, int((data.get("metadata") or {}).get("version") or 0)

    def exists(self, secret_name: str) -> bool:
        metadata = self._metadata(secret_name)
        return metadata is not None and bool(metadata.get("versions") or metadata.get("current_version"))

    def write(
        self, secret_name: str, document: SecretDocument, *, replacing: Replaced | None = None
    ) -> Receipt:
        cas = 0
        if replacing is not None:
            # Only over the bot's own write for that account: the key's mark says the bot wrote it, and its
            # current version must still be that account's (someone may have added a version since, which
            # keeps the key's custom_metadata). cas on that version refuses a change in the moment between.
            metadata = self._metadata(secret_name) or {}
            current = self._read(secret_name)
            if (
                not bears_mark(metadata.get("custom_metadata"), replacing.account_id)
                or current is None
                or str(current[0].get("account_id")) != str(replacing.account_id)
            ):
                raise DestinationError(Failure.TAKEN, "the secret there is not the one the bot wrote")
            cas = current[1]
        try:
            answer = self._as_bot(
                lambda kv: kv.create_or_update_secret(
                    self._path(secret_name), secret=document.fields(), cas=cas, mount_point=self.config.mount
                )
            )
        except vault_errors.InvalidRequest as error:
            if "check-and-set" in str(error):
                raise DestinationError(Failure.TAKEN, "check-and-set did not match") from None
            raise _failure(error, sent=True) from None
        except (vault_errors.VaultError, requests.RequestException) as error:
            raise _failure(error, sent=True) from None
        version = int(((answer or {}).get("data") or {}).get("version") or 0)
        self._try_mark(secret_name, document.account_id)
        return Receipt(version=str(version))

    def _try_mark(self, secret_name: str, account_id: int) -> None:
        """Set the bot's mark beside a write that landed. Its failure does not undo the write: the secret
        holds the new account's document, and deleting that account would leave the store (for a Replace…,
        its current version) holding a dead credential. Without the mark, a later Replace… refuses."""
        try:
            self._as_bot(
                lambda kv: kv.update_metadata(
                    self._path(secret_name),
                    custom_metadata=mark_for(account_id),
                    mount_point=self.config.mount,
                )
            )
        except (vault_errors.VaultError, requests.RequestException) as error:
            log.warning(
                "Vault %s: %s was written, but its mark could not be set (%s)",
                self.name,
                self.location(secret_name),
                _failure(error, sent=True).failure,
            )

    def verify(
        self, secret_name: str, receipt: Receipt, document: SecretDocument, *, since: datetime
    ) -> bool:
        read = self._read(secret_name, int(receipt.version) if receipt.version else None)
        return read is not None and read[0] == document.fields()

    def find_mark(self, secret_name: str, account_id: int, *, since: datetime) -> Receipt | None:
        read = self._read(secret_name)
        if read is None or str(read[0].get("account_id")) != str(account_id):
            return None
        metadata = self._metadata(secret_name) or {}
        if not bears_mark(metadata.get("custom_metadata"), account_id):
            self._try_mark(secret_name, account_id)  # the write landed, its mark did not: add it now
        return Receipt(version=str(read[1]))

    def describe(self, secret_name: str, receipt: Receipt | None) -> str:
        version = f" (version {receipt.version})" if receipt and receipt.version else ""
        return f"Vault {self.name} at {self.location(secret_name)}{version}"

    def check(self) -> list[str]:
        prefix = f"{self.config.mount}/data/{self.config.path_prefix}"
        probe = prefix + "*"
        try:
            answer = self._authenticated().sys.get_capabilities(paths=[probe])
        except (vault_errors.VaultError, requests.RequestException) as error:
            return [f"capabilities-self on {probe} failed ({_failure(error, sent=False).failure})"]
        granted = set((answer.get("data") or answer).get(probe) or answer.get("capabilities") or [])
        if "root" in granted:
            return []
        missing = [capability for capability in NEEDED_CAPABILITIES if capability not in granted]
        return [f"the token lacks {', '.join(missing)} on {probe}"] if missing else []


class VaultKind:
    kind: ClassVar[str] = "vault_kv2"
    config: ClassVar[type[KindConfig]] = VaultConfig

    @staticmethod
    def missing_credentials(config: Any, environment: Mapping[str, SecretStr | None]) -> list[str]:
        if environment.get(TOKEN) or (environment.get(ROLE_ID) and environment.get(SECRET_ID)):
            return []
        return [f"{TOKEN}, or {ROLE_ID} and {SECRET_ID}"]

    @staticmethod
    def build(
        name: str, config: Any, environment: Mapping[str, SecretStr | None], timeout: float
    ) -> VaultDestination:
        namespace = environment.get(NAMESPACE)
        token = environment.get(TOKEN)
        client = hvac.Client(
            url=config.url,
            token=token.get_secret_value() if token else None,
            namespace=namespace.get_secret_value() if namespace else None,
            timeout=timeout,
        )
        role_id, secret_id = environment.get(ROLE_ID), environment.get(SECRET_ID)
        login = None
        if token is None and role_id and secret_id:

            def login() -> None:
                client.auth.approle.login(
                    role_id=role_id.get_secret_value(), secret_id=secret_id.get_secret_value()
                )

        return VaultDestination(name, config, client, login)
