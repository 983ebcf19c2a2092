"""AWS Secrets Manager (and STS) for tests: moto's real API server on loopback, behind a recording proxy
that can inject faults, with boto3 clients that carry dummy credentials and never reach AWS.

moto answers every call as AWS does (ResourceExistsException, AWSCURRENT/AWSPREVIOUS, Tags, ...) but has no
fault injection and does not enforce IAM by default, so every request goes through ``AWSProxy``, a
``RecordingHTTPFake`` that forwards to moto: its faults answer as AWS's JSON protocol does
(``{"__type": ..., "message": ...}``, which botocore turns into a ``ClientError`` with that code).

Public API::

    FakeAWS(region="us-east-1")   .start() -> FakeAWS / .stop() / context manager
        .endpoint_url       the proxy's "http://127.0.0.1:PORT": give it to the code under test
        .moto_url           moto itself (no recording, no faults)
        .region, .credentials {"aws_access_key_id", "aws_secret_access_key"} (dummy; os.environ untouched)
        .session() -> boto3.Session                 with the dummy credentials and region
        .client(service="secretsmanager", *, attempts=1) -> botocore client via the proxy
                                                    (attempts=1: a fault is seen at once, no retry)
        .environment() -> {AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
                           AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_STS}   for a bot subprocess
        .reset()            moto forgets every secret (POST /moto-api/reset; moto's state is per process),
                            the proxy its calls and faults
        .proxy -> AWSProxy

    AWSProxy (see tests/fakes/_recording.py for .calls, .wait_for, .fail_next, .drop_next,
              .apply_then_drop, .delay_next, .clear_faults)
        .actions() -> list[str]        the action of every request, e.g. "CreateSecret", "PutSecretValue"
        .deny_next(count=1, *, action=None)   AccessDeniedException (HTTP 400, as AWS's JSON services
                                              answer it), moto untouched
        .fail_next(count, status, *, where=action_is("PutSecretValue"), ...)   e.g. 500 InternalFailure
        .apply_then_drop(count, *, where=action_is("CreateSecret"))   moto did it; the client never hears
                                              (botocore: ConnectionClosedError; a stopped proxy:
                                              EndpointConnectionError)
        A fault's default body: 5xx {"__type": "InternalFailure"}, 429 ThrottlingException, 403/400
        AccessDeniedException, others ValidationException.
        action_is(name) -> matcher for ``where=``

    Fixtures for a test module (``aws_server, aws = tests.fakes.aws.aws_server, tests.fakes.aws.aws``):
        aws_server   one FakeAWS per test session (moto's first start costs about a second)
        aws          that FakeAWS, reset before each test; fails the test on a proxy internal error
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Self
from urllib.parse import urlencode

import boto3
import pytest
import requests
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.fakes._recording import HTTPCall, Matcher, RecordingHTTPFake
from tests.fakes._server import Reply

__all__ = ["AWSProxy", "FakeAWS", "action_is", "aws", "aws_server"]

AMZ_JSON = "application/x-amz-json-1.1"
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "content-type", "transfer-encoding", "date", "server"}
)
_FAULT_CODES = {429: "ThrottlingException", 403: "AccessDeniedException", 400: "AccessDeniedException"}


def _action(call: HTTPCall) -> str:
    """JSON-protocol services (Secrets Manager) name it in X-Amz-Target; query ones (STS) in Action=."""
    target = call.headers.get("X-Amz-Target") or ""
    if target:
        return target.rpartition(".")[2]
    form = dict(p.split("=", 1) for p in call.body.decode("utf-8", "replace").split("&") if "=" in p)
    return form.get("Action") or call.query.get("Action", "")


def action_is(name: str) -> Matcher:
    return lambda call: _action(call) == name


class AWSProxy(RecordingHTTPFake):
    """Forwards every request to moto unless a scripted fault answers it first."""

    def __init__(self) -> None:
        super().__init__()
        self.upstream = ""

    def actions(self) -> list[str]:
        return [_action(c) for c in self.calls()]

    def deny_next(self, count: int | None = 1, *, action: str | None = None) -> None:
        name = action or "*"
        message = (
            f"User: arn:aws:iam::123456789012:user/test is not authorized to perform: secretsmanager:{name}"
        )
        self.fail_next(
            count,
            400,
            where=None if action is None else action_is(action),
            body={"__type": "AccessDeniedException", "message": message},
            headers={"x-amzn-ErrorType": "AccessDeniedException"},
        )

    def forget(self) -> None:
        with self._lock:
            self._calls.clear()
            self.internal_errors.clear()
        self.clear_faults()

    def _error_body(self, status: int) -> Any:
        code = "InternalFailure" if status >= 500 else _FAULT_CODES.get(status, "ValidationException")
        return {"__type": code, "message": f"fake aws: injected {status}"}

    def _serve(self, call: HTTPCall) -> Reply:
        query = f"?{urlencode(call.query)}" if call.query else ""
        headers = {k: v for k, v in call.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(
            call.method, f"{self.upstream}{call.path}{query}", headers=headers, data=call.body, timeout=30
        )
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Reply(answer.status_code, answer.content, answer.headers.get("Content-Type", AMZ_JSON), passed)


class FakeAWS:
    """moto's ThreadedMotoServer on a free loopback port, behind an ``AWSProxy``."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.proxy = AWSProxy()
        self._moto: ThreadedMotoServer | None = None
        self.moto_url = ""

    def start(self) -> Self:
        if self._moto is None:
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            _, port = self._moto.get_host_and_port()
            self.moto_url = f"http://127.0.0.1:{port}"
            self.proxy.upstream = self.moto_url
        self.proxy.start()
        return self

    def stop(self) -> None:
        self.proxy.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        return self.proxy.url

    def session(self) -> boto3.Session:
        return boto3.Session(region_name=self.region, **self.credentials)

    def client(self, service: str = "secretsmanager", *, attempts: int = 1) -> Any:
        # total_max_attempts counts the first try (botocore's max_attempts counts only the retries)
        retries: Any = {"total_max_attempts": attempts, "mode": "standard"}
        config = Config(retries=retries, connect_timeout=5, read_timeout=10)
        return self.session().client(service, endpoint_url=self.endpoint_url, config=config)

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.endpoint_url,
            "AWS_ENDPOINT_URL_STS": self.endpoint_url,
        }

    def reset(self) -> None:
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10).raise_for_status()
        self.proxy.forget()


@pytest.fixture(scope="session")
def aws_server() -> Iterator[FakeAWS]:
    with FakeAWS() as fake:
        yield fake


@pytest.fixture
def aws(aws_server: FakeAWS) -> Iterator[FakeAWS]:
    aws_server.start()  # a test may have stopped the proxy to make AWS unreachable
    aws_server.reset()
    yield aws_server
    assert aws_server.proxy.internal_errors == []
