"""AWS Secrets Manager, through boto3.

Policy keys: `region`, `name_prefix`, an optional `kms_key_id`, an optional `endpoint_url` (a VPC
endpoint, or a test server). Credentials: boto3's default chain (environment, profile, instance role).
A new secret is `create_secret` (refused if the name exists), a replacement `put_secret_value` (the old
value stays readable as AWSPREVIOUS). The bot's mark is the secret's tags.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
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
)
from bot.redaction import redactor

log = logging.getLogger(__name__)

CREDENTIALS = (
    "AWS credentials (boto3's chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role)"
)
FORBIDDEN_CODES = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"}
KEY_CODES = {
    "KMSAccessDeniedException",
    "KMSInvalidStateException",
    "KMSDisabledException",
    "EncryptionFailure",
}
UNAVAILABLE_CODES = {"InternalServiceError", "ServiceUnavailable", "ThrottlingException"}


class AwsConfig(KindConfig):
    kind: Literal["aws_secrets_manager"] = "aws_secrets_manager"
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    name_prefix: str = Field(default="mixpanel/", pattern=r"^[A-Za-z0-9/_+=.@-]*$", max_length=200)
    kms_key_id: str | None = None
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://\S+$")

    @field_validator("endpoint_url")
    @classmethod
    def _no_clear_text(cls, url: str | None) -> str | None:
        return https_unless_loopback(url)


def _failure(error: Exception, *, sent: bool) -> DestinationError:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in FORBIDDEN_CODES:
            return DestinationError(Failure.FORBIDDEN, code)
        if code == "ResourceExistsException":
            return DestinationError(Failure.TAKEN, code)
        if code in KEY_CODES:
            return DestinationError(Failure.KEY_UNAVAILABLE, code)
        if code in UNAVAILABLE_CODES:
            return DestinationError(Failure.UNREACHABLE, code)
        return DestinationError(Failure.REJECTED, code or "ClientError")
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return DestinationError(Failure.UNREACHABLE, type(error).__name__)
    if isinstance(error, ReadTimeoutError | HTTPClientError):
        # Sent, and no answer came (a read timeout, a dropped connection): a write may have landed.
        return DestinationError(
            Failure.OUTCOME_UNKNOWN if sent else Failure.UNREACHABLE, type(error).__name__
        )
    if isinstance(error, NoCredentialsError):
        return DestinationError(Failure.FORBIDDEN, "no credentials")
    return DestinationError(Failure.UNREACHABLE, type(error).__name__)


def _not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or []}


class AwsDestination:
    label = "AWS Secrets Manager"

    def __init__(self, name: str, config: AwsConfig, client: Any, sts: Any):
        self.name = name
        self.config = config
        self._client = client
        self._sts = sts

    def location(self, secret_name: str) -> str:
        return self.config.name_prefix + secret_name

    def _describe(self, secret_name: str) -> dict[str, Any] | None:
        try:
            return self._client.describe_secret(SecretId=self.location(secret_name))
        except ClientError as error:
            if _not_found(error):
                return None
            raise _failure(error, sent=False) from None
        except BotoCoreError as error:
            raise _failure(error, sent=False) from None

    def _read(self, secret_name: str, version: str | None = None) -> tuple[dict[str, Any], str] | None:
        arguments: dict[str, Any] = {"SecretId": self.location(secret_name)}
        if version:
            arguments["VersionId"] = version
        try:
            answer = self._client.get_secret_value(**arguments)
        except ClientError as error:
            if _not_found(error):
                return None
            raise _failure(error, sent=False) from None
        except BotoCoreError as error:
            raise _failure(error, sent=False) from None
        try:
            return json.loads(answer.get("SecretString") or "{}"), answer.get("VersionId") or ""
        except ValueError:
            return {}, answer.get("VersionId") or ""

    def exists(self, secret_name: str) -> bool:
        return self._describe(secret_name) is not None

    def write(
        self, secret_name: str, document: SecretDocument, *, replacing: Replaced | None = None
    ) -> Receipt:
        name = self.location(secret_name)
        mark = [{"Key": key, "Value": value} for key, value in mark_for(document.account_id).items()]
        try:
            if replacing is None:
                arguments: dict[str, Any] = {"Name": name, "SecretString": document.as_json(), "Tags": mark}
                if self.config.kms_key_id:
                    arguments["KmsKeyId"] = self.config.kms_key_id
                answer = self._client.create_secret(**arguments)
            else:
                # Only over the bot's own write for that account: tagged so, and its current value still
                # that account's document (a value put by someone else keeps the tags).
                described = self._describe(secret_name)
                current = self._read(secret_name)
                if (
                    described is None
                    or not bears_mark(_tags(described.get("Tags")), replacing.account_id)
                    or current is None
                    or str(current[0].get("account_id")) != str(replacing.account_id)
                ):
                    raise DestinationError(Failure.TAKEN, "the secret there is not the one the bot wrote")
                answer = self._client.put_secret_value(SecretId=name, SecretString=document.as_json())
        except (ClientError, BotoCoreError) as error:
            raise _failure(error, sent=True) from None
        if replacing is not None:
            self._try_mark(secret_name, document.account_id)
        return Receipt(version=answer.get("VersionId"))

    def _try_mark(self, secret_name: str, account_id: int) -> None:
        """Retag a secret whose new value landed. Its failure does not undo the write: deleting the new
        account would leave AWSCURRENT holding a dead credential. Without the mark, a later Replace…
        refuses."""
        mark = [{"Key": key, "Value": value} for key, value in mark_for(account_id).items()]
        try:
            self._client.tag_resource(SecretId=self.location(secret_name), Tags=mark)
        except (ClientError, BotoCoreError) as error:
            log.warning(
                "AWS %s: %s was written, but its tags could not be set (%s)",
                self.name,
                self.location(secret_name),
                _failure(error, sent=True).detail,
            )

    def verify(
        self, secret_name: str, receipt: Receipt, document: SecretDocument, *, since: datetime
    ) -> bool:
        read = self._read(secret_name, receipt.version)
        return read is not None and read[0] == document.fields()

    def find_mark(self, secret_name: str, account_id: int, *, since: datetime) -> Receipt | None:
        read = self._read(secret_name)
        if read is None or str(read[0].get("account_id")) != str(account_id):
            return None
        described = self._describe(secret_name) or {}
        if not bears_mark(_tags(described.get("Tags")), account_id):
            self._try_mark(secret_name, account_id)  # the value landed, its tags did not: add them now
        return Receipt(version=read[1])

    def describe(self, secret_name: str, receipt: Receipt | None) -> str:
        version = f" (version {receipt.version})" if receipt and receipt.version else ""
        return f"AWS Secrets Manager {self.name} at {self.location(secret_name)}{version}"

    def check(self) -> list[str]:
        try:
            self._sts.get_caller_identity()
        except (ClientError, BotoCoreError) as error:
            return [f"sts get-caller-identity failed ({_failure(error, sent=False).detail})"]
        try:
            # A dry look-up: lists (at most one) secret under the prefix, writes nothing.
            self._client.list_secrets(
                MaxResults=1, Filters=[{"Key": "name", "Values": [self.config.name_prefix]}]
            )
        except (ClientError, BotoCoreError) as error:
            detail = _failure(error, sent=False).detail
            return [f"listing secrets under {self.config.name_prefix} failed ({detail})"]
        return []


def _session() -> boto3.session.Session:
    return boto3.session.Session()


class AwsKind:
    kind: ClassVar[str] = "aws_secrets_manager"
    config: ClassVar[type[KindConfig]] = AwsConfig

    @staticmethod
    def missing_credentials(config: Any, environment: Mapping[str, SecretStr | None]) -> list[str]:
        return [] if _session().get_credentials() is not None else [CREDENTIALS]

    @staticmethod
    def build(
        name: str, config: Any, environment: Mapping[str, SecretStr | None], timeout: float
    ) -> AwsDestination:
        session = _session()
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            redactor.pin(frozen.secret_key)
            redactor.pin(frozen.token)
        # No retries: a write that timed out is settled by reading back, never by sending it again.
        client_config = Config(
            region_name=config.region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1},
        )
        endpoint = {"endpoint_url": config.endpoint_url} if config.endpoint_url else {}
        client = session.client("secretsmanager", config=client_config, **endpoint)
        sts = session.client("sts", config=client_config, **endpoint)
        return AwsDestination(name, config, client, sts)
