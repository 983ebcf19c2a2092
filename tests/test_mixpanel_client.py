"""The Mixpanel client against the loopback fake: real HTTP, real requests sessions."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.mixpanel.client import ErrorKind, MixpanelClient, MixpanelError, retry_after_seconds, same_origin
from bot.mixpanel.models import NewServiceAccount, ProjectGrant
from bot.models import Role
from tests import clock
from tests.conftest import MP_SECRET, MP_USERNAME, ORG_ID
from tests.fakes.mixpanel import drop, hang, rate_limited, respond, respond_html


def new_account() -> NewServiceAccount:
    """What the bot asks Mixpanel for; built while the test runs, so it expires a month from the clock."""
    return NewServiceAccount(
        username="svc",
        role=Role.ANALYST,
        expires=clock.iso_z(clock.now() + timedelta(days=30)),
        projects=(ProjectGrant(3001, Role.ANALYST),),
    )


@pytest.fixture
def client(mixpanel):
    slept: list[float] = []
    client = MixpanelClient(
        mixpanel.base_url,
        MP_USERNAME,
        SecretStr(MP_SECRET),
        read_timeout=1.0,
        max_rate_limit_wait=10,
        sleep=slept.append,
        jitter=lambda: 0.5,
    )
    client.slept = slept
    yield client
    client.close()


def test_me_lists_organizations_and_projects(client, mixpanel):
    mixpanel.organizations[ORG_ID]["role"] = "owner"
    me = client.me()
    assert me.organization_ids == [ORG_ID]
    assert me.organization(ORG_ID).role == "owner" and me.organization(ORG_ID).name == "Acme"
    assert me.organization(ORG_ID + 1) is None
    assert me.user_id == mixpanel.user_id  # the bot's own Mixpanel user, as /me names it
    assert {p.id for p in me.projects} == set(mixpanel.projects)
    assert mixpanel.me_calls()[0].query.get("include_workspace_users") in ("false", ["false"])
    assert me.user_id == mixpanel.user_id  # the `creator` of the accounts the bot makes


def test_created_accounts_name_the_authenticated_user_as_creator(client, mixpanel):
    created = client.create_service_account(ORG_ID, new_account())
    by_hand = mixpanel.add_account(ORG_ID, "svc")
    creators = {a.id: a.creator for a in client.list_service_accounts(ORG_ID)}
    assert creators == {created.id: client.me().user_id, by_hand["id"]: by_hand["creator"]}
    assert by_hand["creator"] != mixpanel.user_id


def test_create_returns_the_full_username_and_a_secret_token(client, mixpanel):
    created = client.create_service_account(ORG_ID, new_account())
    assert created.username.startswith("svc.") and created.username.endswith(".mp-service-account")
    assert created.token.get_secret_value() == mixpanel.tokens[created.id]
    assert created.token.get_secret_value() not in repr(created)
    assert mixpanel.schema_violations == []


@pytest.mark.parametrize("status", [307, 308])
def test_redirects_keep_the_method_and_body(client, mixpanel, status):
    mixpanel.redirect_slash = status
    account = new_account()
    created = client.create_service_account(ORG_ID, account)
    posts = mixpanel.calls("POST")
    assert [c.path.endswith("/") for c in posts] == [False, True]
    assert posts[1].json == account.to_json()
    assert created.id in mixpanel.accounts


def test_a_redirect_to_another_host_is_not_followed(client, mixpanel):
    mixpanel.script("create", respond(307, {}, headers={"Location": "https://evil.example/steal"}))
    with pytest.raises(MixpanelError) as raised:
        client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is ErrorKind.INVALID_RESPONSE


@pytest.mark.parametrize(
    ("source", "target", "same"),
    [
        ("https://mixpanel.com/api/x", "https://mixpanel.com/api/x/", True),
        ("https://mixpanel.com/api/x", "https://MIXPANEL.com:443/api/x/", True),
        ("http://127.0.0.1:80/a", "http://127.0.0.1/b", True),
        ("https://mixpanel.com/api/x", "http://mixpanel.com/api/x", False),
        ("https://mixpanel.com/api/x", "https://mixpanel.com:8443/api/x", False),
        ("https://mixpanel.com/api/x", "https://eu.mixpanel.com/api/x", False),
        ("https://mixpanel.com/api/x", "https://mixpanel.com:notaport/", False),
        ("https://mixpanel.com/api/x", "ftp://mixpanel.com/api/x", False),
    ],
)
def test_same_origin_compares_scheme_host_and_port(source, target, same):
    assert same_origin(target, source) is same


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request with the server's `reply`; records (method, path, Authorization)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):
        pass

    def _answer(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        status, headers = self.server.reply
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = _answer


@contextmanager
def _loopback(reply, tls: ssl.SSLContext | None = None) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.reply = [], reply
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loopback_certificate(tmp_path) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a loopback certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert


def test_an_https_redirect_to_http_is_refused_before_any_credential_leaves(loopback_certificate, monkeypatch):
    """The downgrade keeps host and port, so only the scheme tells it apart: credentials would go in clear."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(loopback_certificate))  # requests prefers it to .verify
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(loopback_certificate, loopback_certificate.with_name("key.pem"))
    with _loopback((500, {}), tls=tls) as secure:
        port = secure.server_address[1]
        secure.reply = (301, {"Location": f"http://127.0.0.1:{port}/api/app/me"})
        base = f"https://127.0.0.1:{port}/api/app"
        client = MixpanelClient(base, MP_USERNAME, SecretStr(MP_SECRET), read_attempts=1)
        try:
            with pytest.raises(MixpanelError) as raised:
                client.me()
        finally:
            client.close()
    # One request, over TLS, to the configured origin; the redirect itself was never followed.
    assert [(method, path) for method, path, _ in secure.seen] == [
        ("GET", "/api/app/me?include_workspace_users=false")
    ]
    assert secure.seen[0][2] is not None
    assert raised.value.kind is ErrorKind.INVALID_RESPONSE
    assert "another scheme" in str(raised.value)


def test_a_redirect_to_another_port_is_refused(client, mixpanel):
    with _loopback((200, {})) as elsewhere:
        moved = {"Location": f"http://127.0.0.1:{elsewhere.server_address[1]}/api/app/me"}
        mixpanel.script("create", respond(308, {}, headers=moved))
        with pytest.raises(MixpanelError) as raised:
            client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is ErrorKind.INVALID_RESPONSE
    assert elsewhere.seen == []
    assert len(mixpanel.create_calls()) == 1


def test_429_on_create_is_retried_after_retry_after(client, mixpanel):
    mixpanel.script("create", rate_limited("3"))
    client.create_service_account(ORG_ID, new_account())
    assert client.slept == [3.0]
    assert len(mixpanel.create_calls()) == 2


def test_429_waits_are_bounded(client, mixpanel):
    mixpanel.script("create", rate_limited("60"))
    with pytest.raises(MixpanelError) as raised:
        client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is ErrorKind.RATE_LIMITED and not raised.value.ambiguous
    assert client.slept == []


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (respond(500, {"status": "error", "error": "boom"}), ErrorKind.SERVER_ERROR),
        (respond_html(504, "<html>gateway timeout</html>"), ErrorKind.SERVER_ERROR),
        (drop(), ErrorKind.CONNECTION),
        (hang(3), ErrorKind.TIMEOUT),
    ],
)
def test_ambiguous_create_outcomes_are_never_retried(client, mixpanel, fault, kind):
    mixpanel.script("create", fault)
    with pytest.raises(MixpanelError) as raised:
        client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is kind and raised.value.ambiguous
    assert len(mixpanel.create_calls()) == 1


def test_connection_refused_is_retried_then_reported_as_certain(mixpanel):
    slept: list[float] = []
    client = MixpanelClient(
        "http://127.0.0.1:9/api/app", "u", SecretStr("p"), sleep=slept.append, jitter=lambda: 0.5
    )
    with pytest.raises(MixpanelError) as raised:
        client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is ErrorKind.CONNECTION and not raised.value.ambiguous
    assert len(slept) == 3 and slept == sorted(slept)  # exponential backoff


def test_reads_are_retried_with_backoff(client, mixpanel):
    mixpanel.script("list", respond(502, {"status": "error", "error": "x"}), drop())
    assert client.list_service_accounts(ORG_ID) == []
    assert len(mixpanel.list_calls()) == 3
    assert client.slept == [0.5, 1.0]


def test_deleting_an_account_that_is_already_gone_is_fine(client, mixpanel):
    client.delete_service_account(ORG_ID, 999999)
    assert mixpanel.delete_calls()[0].status == 404


def test_errors_with_http_200_are_errors(client, mixpanel):
    from tests.fakes.mixpanel import error_200

    mixpanel.script("create", error_200({"code": 3, "message": "Invalid   project\nid"}))
    with pytest.raises(MixpanelError) as raised:
        client.create_service_account(ORG_ID, new_account())
    assert raised.value.kind is ErrorKind.API_ERROR and raised.value.reason == "Invalid project id"


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7", now.timestamp()) == 7
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now.timestamp()) == 30
    )
    assert (
        retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now.timestamp()) == 0
    )
    assert retry_after_seconds("soon", now.timestamp()) is None
    assert retry_after_seconds(None, now.timestamp()) is None
