"""The secret-store fakes (Vault, GitHub, AWS) behave like the real services, driven by the real clients
(hvac, requests + PyNaCl, boto3), so the bot's destination tests can trust them."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import boto3
import hvac
import hvac.exceptions
import pytest
import requests
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from nacl.public import PrivateKey, PublicKey, SealedBox

from tests.fakes import aws as aws_fakes
from tests.fakes.aws import FakeAWS, action_is
from tests.fakes.github import FakeGitHub
from tests.fakes.vault import FakeVault

MPSA_POLICY = {
    "secret/data/mpsa/*": ["create", "read", "update"],
    "secret/metadata/mpsa/*": ["create", "read", "update"],
}

aws_server, aws = aws_fakes.aws_server, aws_fakes.aws  # the fixtures of tests/fakes/aws.py

# ---------------------------------------------------------------------- Vault


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    with FakeVault() as fake:
        yield fake
    assert fake.internal_errors == []


def _root(vault: FakeVault, **kwargs: object) -> hvac.Client:
    return hvac.Client(url=vault.url, token=vault.root_token, **kwargs)


def test_vault_keeps_every_version_and_reads_older_ones(vault: FakeVault) -> None:
    kv = _root(vault).secrets.kv.v2
    first = kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, cas=0, mount_point="secret")
    second = kv.create_or_update_secret("mpsa/etl", {"token": "t-2"}, cas=1, mount_point="secret")
    assert (first["data"]["version"], second["data"]["version"]) == (1, 2)

    latest = kv.read_secret_version("mpsa/etl", mount_point="secret", raise_on_deleted_version=True)
    older = kv.read_secret_version("mpsa/etl", version=1, mount_point="secret", raise_on_deleted_version=True)

    assert latest["data"]["data"] == {"token": "t-2"}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["deletion_time"] == ""
    assert older["data"]["data"] == {"token": "t-1"}
    assert [v["data"] for v in vault.versions("secret", "mpsa/etl")] == [{"token": "t-1"}, {"token": "t-2"}]
    assert vault.secret("secret", "mpsa/etl") == {"token": "t-2"}
    [write] = vault.calls("POST")[:1]
    assert write.json == {"data": {"token": "t-1"}, "options": {"cas": 0}}


def test_vault_check_and_set_refuses_a_stale_or_existing_version(vault: FakeVault) -> None:
    kv = _root(vault).secrets.kv.v2
    kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, cas=0, mount_point="secret")

    for stale in (0, 2):
        with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
            kv.create_or_update_secret("mpsa/etl", {"token": "t-x"}, cas=stale, mount_point="secret")
        assert refused.value.errors == ["check-and-set parameter did not match the current version"]

    assert [v["data"] for v in vault.versions("secret", "mpsa/etl")] == [{"token": "t-1"}]


def test_vault_cas_required_on_the_mount_or_the_path(vault: FakeVault) -> None:
    vault.mount("strict", cas_required=True)
    kv = _root(vault).secrets.kv.v2
    with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
        kv.create_or_update_secret("a", {"token": "t"}, mount_point="strict")
    assert refused.value.errors == ["check-and-set parameter required for this call"]
    assert (
        kv.create_or_update_secret("a", {"token": "t"}, cas=0, mount_point="strict")["data"]["version"] == 1
    )

    kv.update_metadata("b", cas_required=True, mount_point="secret")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        kv.create_or_update_secret("b", {"token": "t"}, mount_point="secret")
    assert vault.versions("secret", "b") == []


def test_vault_custom_metadata_is_a_map_of_strings(vault: FakeVault) -> None:
    kv = _root(vault).secrets.kv.v2
    kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    kv.update_metadata(
        "mpsa/etl", custom_metadata={"slack_user": "U1", "account_id": "7001"}, mount_point="secret"
    )

    metadata = kv.read_secret_metadata("mpsa/etl", mount_point="secret")["data"]
    read = kv.read_secret_version("mpsa/etl", mount_point="secret", raise_on_deleted_version=True)

    assert metadata["custom_metadata"] == {"slack_user": "U1", "account_id": "7001"}
    assert metadata["current_version"] == 1
    assert set(metadata["versions"]) == {"1"}
    assert read["data"]["metadata"]["custom_metadata"] == {"slack_user": "U1", "account_id": "7001"}
    with pytest.raises(hvac.exceptions.InvalidRequest):
        kv.update_metadata("mpsa/etl", custom_metadata={"account_id": 7001}, mount_point="secret")
    assert vault.custom_metadata("secret", "mpsa/etl") == {"slack_user": "U1", "account_id": "7001"}


def test_vault_policy_allows_only_its_paths_and_capabilities(vault: FakeVault) -> None:
    token = vault.add_token(policy={"secret/data/mpsa/*": ["create", "read"]})
    kv = hvac.Client(url=vault.url, token=token).secrets.kv.v2

    kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):  # a second version is an update
        kv.create_or_update_secret("mpsa/etl", {"token": "t-2"}, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret("other/etl", {"token": "t-1"}, mount_point="secret")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.update_metadata("mpsa/etl", custom_metadata={"a": "b"}, mount_point="secret")

    assert vault.versions("secret", "other/etl") == []
    assert [v["data"] for v in vault.versions("secret", "mpsa/etl")] == [{"token": "t-1"}]
    assert vault.calls("POST", "/v1/secret/data/other/etl")[0].status == 403


def test_vault_capabilities_self_tells_without_writing(vault: FakeVault) -> None:
    token = vault.add_token(policy={**MPSA_POLICY, "secret/data/mpsa/locked": ["deny"]})
    client = hvac.Client(url=vault.url, token=token)

    answer = client.sys.get_capabilities(
        ["secret/data/mpsa/etl", "secret/data/other", "secret/data/mpsa/locked"]
    )
    single = client.sys.get_capabilities(["secret/metadata/mpsa/etl"])

    assert answer["data"] == {
        "secret/data/mpsa/etl": ["create", "read", "update"],
        "secret/data/other": ["deny"],
        "secret/data/mpsa/locked": ["deny"],
    }
    assert single["capabilities"] == single["secret/metadata/mpsa/etl"] == ["create", "read", "update"]
    assert _root(vault).sys.get_capabilities(["secret/data/x"])["capabilities"] == ["root"]
    assert vault.versions("secret", "mpsa/etl") == []


def test_vault_unknown_or_revoked_token_is_forbidden(vault: FakeVault) -> None:
    token = vault.add_token(policy=MPSA_POLICY)
    client = hvac.Client(url=vault.url, token=token)
    assert client.auth.token.lookup_self()["data"]["ttl"] == 3600

    vault.revoke_token(token)

    for stranger in (client, hvac.Client(url=vault.url, token="hvs.not-issued")):
        with pytest.raises(hvac.exceptions.Forbidden) as refused:
            stranger.secrets.kv.v2.read_secret_version(
                "mpsa/etl", mount_point="secret", raise_on_deleted_version=True
            )
        assert refused.value.errors == ["permission denied"]


def test_vault_namespace_must_be_sent() -> None:
    with FakeVault(namespace="admin/team") as vault:
        token = vault.add_token(policy=MPSA_POLICY)
        inside = hvac.Client(url=vault.url, token=token, namespace="admin/team")
        inside.secrets.kv.v2.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")

        with pytest.raises(hvac.exceptions.Forbidden):  # the namespace's token is unknown at the root
            hvac.Client(url=vault.url, token=token).secrets.kv.v2.create_or_update_secret(
                "mpsa/etl", {"token": "t-2"}, mount_point="secret"
            )
        with pytest.raises(hvac.exceptions.InvalidPath):  # the root token finds no such mount at the root
            _root(vault).secrets.kv.v2.create_or_update_secret(
                "mpsa/etl", {"token": "t-2"}, mount_point="secret"
            )

        assert [v["data"] for v in vault.versions("secret", "mpsa/etl")] == [{"token": "t-1"}]
        assert vault.calls("POST")[0].headers["X-Vault-Namespace"] == "admin/team"
    assert vault.internal_errors == []


def test_vault_approle_login_issues_a_token_with_the_role_policy() -> None:
    with FakeVault(namespace="admin") as vault:
        role_id, secret_id = vault.add_approle(policy=MPSA_POLICY, ttl=600)
        client = hvac.Client(url=vault.url, namespace="admin")

        with pytest.raises(hvac.exceptions.InvalidRequest):
            client.auth.approle.login(role_id, "wrong-secret-id")
        login = client.auth.approle.login(role_id, secret_id)

        assert login["auth"]["lease_duration"] == 600
        assert vault.logins == [login["auth"]["client_token"]] == [client.token]
        client.secrets.kv.v2.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
        with pytest.raises(hvac.exceptions.Forbidden):
            client.secrets.kv.v2.create_or_update_secret("other", {"token": "t-1"}, mount_point="secret")
        with pytest.raises(hvac.exceptions.Forbidden):  # the login path lives in the namespace too
            hvac.Client(url=vault.url).auth.approle.login(role_id, secret_id)
    assert vault.internal_errors == []


def test_vault_soft_deleted_version_reads_as_missing(vault: FakeVault) -> None:
    kv = _root(vault).secrets.kv.v2
    kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    kv.delete_latest_version_of_secret("mpsa/etl", mount_point="secret")

    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version("mpsa/etl", mount_point="secret", raise_on_deleted_version=True)
    kept = kv.read_secret_version("mpsa/etl", mount_point="secret", raise_on_deleted_version=False)
    assert kept["data"]["metadata"]["deletion_time"] != ""
    assert vault.secret("secret", "mpsa/etl") is None
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv.read_secret_version("mpsa/never", mount_point="secret", raise_on_deleted_version=True)


def test_vault_fails_the_next_matching_requests_then_serves(vault: FakeVault) -> None:
    kv = _root(vault).secrets.kv.v2
    vault.fail_next(2, 503, method="POST", path_contains="/data/")

    for _ in range(2):
        with pytest.raises(hvac.exceptions.VaultDown):
            kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    assert vault.versions("secret", "mpsa/etl") == []
    kv.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")

    assert [c.fault for c in vault.calls("POST")] == ["fail", "fail", None]
    assert [v["data"] for v in vault.versions("secret", "mpsa/etl")] == [{"token": "t-1"}]


def test_vault_applies_a_write_and_then_drops_the_connection(vault: FakeVault) -> None:
    vault.apply_then_drop(method="POST")
    with pytest.raises(requests.ConnectionError):
        _root(vault).secrets.kv.v2.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    assert vault.secret("secret", "mpsa/etl") == {"token": "t-1"}

    vault.apply_then_drop(method="POST", hang=5)
    with pytest.raises(requests.Timeout):
        _root(vault, timeout=0.3).secrets.kv.v2.create_or_update_secret(
            "mpsa/etl", {"token": "t-2"}, cas=1, mount_point="secret"
        )
    vault.wait_for(lambda c: c.method == "POST" and c.fault == "apply_then_drop", count=2)
    assert vault.secret("secret", "mpsa/etl") == {"token": "t-2"}


def test_vault_stopped_is_unreachable_and_comes_back_on_its_port(vault: FakeVault) -> None:
    client = _root(vault)
    client.secrets.kv.v2.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    url = vault.url

    vault.stop()
    with pytest.raises(requests.ConnectionError):
        client.secrets.kv.v2.read_secret_version(
            "mpsa/etl", mount_point="secret", raise_on_deleted_version=True
        )
    vault.start()

    assert vault.url == url
    read = client.secrets.kv.v2.read_secret_version(
        "mpsa/etl", mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"token": "t-1"}


def test_vault_sealed_answers_503(vault: FakeVault) -> None:
    vault.sealed = True
    client = _root(vault)
    assert client.sys.read_health_status(method="GET").status_code == 503
    with pytest.raises(hvac.exceptions.VaultDown):
        client.secrets.kv.v2.create_or_update_secret("mpsa/etl", {"token": "t-1"}, mount_point="secret")
    vault.sealed = False
    assert client.sys.read_health_status(method="GET")["sealed"] is False


# ---------------------------------------------------------------------- GitHub

REPO = "acme/analytics"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(repos=(REPO,)) as fake:
        yield fake
    assert fake.internal_errors == []


def _gh(github: FakeGitHub, token: str | None = None, scheme: str = "Bearer") -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"{scheme} {token or github.token}"
    session.headers["Accept"] = "application/vnd.github+json"
    session.headers["X-GitHub-Api-Version"] = "2022-11-28"
    return session


def _sealed(public_key: str, value: str) -> str:
    box = SealedBox(PublicKey(base64.b64decode(public_key)))
    return base64.b64encode(box.encrypt(value.encode())).decode()


def _put(session: requests.Session, url: str, value: str) -> requests.Response:
    """What a client does: fetch the key of ``url``'s secrets, seal ``value`` to it, PUT it."""
    secrets_url = url.rsplit("/", 1)[0]
    key = session.get(f"{secrets_url}/public-key", timeout=5).json()
    body = {"encrypted_value": _sealed(key["key"], value), "key_id": key["key_id"]}
    return session.put(url, json=body, timeout=5)


def test_github_decrypts_what_it_receives_201_then_204(github: FakeGitHub) -> None:
    session = _gh(github)
    url = f"{github.url}/repos/{REPO}/actions/secrets/mixpanel_token"

    created = _put(session, url, "first-secret")
    updated = _put(session, url, "second-secret")
    shown = session.get(url, timeout=5).json()

    assert (created.status_code, updated.status_code) == (201, 204)
    assert github.secret_value(REPO, "MIXPANEL_TOKEN") == "second-secret"
    assert github.secret(REPO, "MIXPANEL_TOKEN")["writes"] == 2
    assert set(shown) == {"name", "created_at", "updated_at"}
    assert shown["name"] == "MIXPANEL_TOKEN"
    assert shown["updated_at"] == github.secret(REPO, "MIXPANEL_TOKEN")["updated_at"]
    assert "second-secret" not in session.get(f"{github.url}/repos/{REPO}/actions/secrets", timeout=5).text
    assert session.get(f"{github.url}/repos/{REPO.upper()}", timeout=5).json()["full_name"] == REPO


def test_github_refuses_a_wrong_key_or_an_undecryptable_value(github: FakeGitHub) -> None:
    session = _gh(github)
    url = f"{github.url}/repos/{REPO}/actions/secrets/MIXPANEL_TOKEN"
    key_id, key = github.public_key(REPO)
    stranger = base64.b64encode(bytes(PrivateKey.generate().public_key)).decode()

    bodies = [
        {"encrypted_value": _sealed(key, "v"), "key_id": "0"},
        {"encrypted_value": _sealed(stranger, "v"), "key_id": key_id},
        {"encrypted_value": "not base64!", "key_id": key_id},
    ]
    statuses = [session.put(url, json=body, timeout=5).status_code for body in bodies]
    old_key_id = key_id
    github.rotate_key(REPO)
    stale = session.put(url, json={"encrypted_value": _sealed(key, "v"), "key_id": old_key_id}, timeout=5)

    assert statuses == [422, 422, 422]
    assert stale.status_code == 422
    assert github.secret(REPO, "MIXPANEL_TOKEN") is None


@pytest.mark.parametrize("name", ["1TOKEN", "GITHUB_TOKEN", "github_token", "MY-TOKEN", "MY TOKEN"])
def test_github_refuses_invalid_secret_names(github: FakeGitHub, name: str) -> None:
    response = _put(_gh(github), f"{github.url}/repos/{REPO}/actions/secrets/{name}", "v")
    assert response.status_code == 422
    assert github.calls("PUT")[0].status == 422


def test_github_environment_secrets_have_their_own_key(github: FakeGitHub) -> None:
    repo_id = github.add_repo(REPO, environments=["production"])
    session = _gh(github)
    assert session.get(f"{github.url}/repos/{REPO}", timeout=5).json()["id"] == repo_id
    by_id = f"{github.url}/repositories/{repo_id}/environments/production/secrets/MIXPANEL_TOKEN"
    by_name = f"{github.url}/repos/{REPO}/environments/production/secrets/OTHER_TOKEN"

    assert _put(session, by_id, "prod-secret").status_code == 201
    assert _put(session, by_name, "other-secret").status_code == 201
    assert github.public_key(REPO, "production") != github.public_key(REPO)
    assert github.secret_value(REPO, "MIXPANEL_TOKEN", "production") == "prod-secret"
    assert github.secret_value(REPO, "OTHER_TOKEN", "production") == "other-secret"
    assert github.secret(REPO, "MIXPANEL_TOKEN") is None
    missing = f"{github.url}/repositories/{repo_id}/environments/staging/secrets/public-key"
    assert session.get(missing, timeout=5).status_code == 404


def test_github_tokens_401_403_and_unseen_repositories_404(github: FakeGitHub) -> None:
    github.add_repo("acme/other")
    github.add_token("ghp-read", permission="read")
    github.add_token("ghp-narrow", repos=["acme/other"])
    url = f"{github.url}/repos/{REPO}/actions/secrets/MIXPANEL_TOKEN"

    repo_url = f"{github.url}/repos/{REPO}"
    assert _gh(github).get(repo_url, timeout=5).json()["permissions"]["push"] is True
    assert _gh(github, "ghp-read").get(repo_url, timeout=5).json()["permissions"]["push"] is False
    assert _gh(github, "ghp-wrong").get(url, timeout=5).status_code == 401
    assert requests.get(url, timeout=5).status_code == 401
    assert _put(_gh(github, "ghp-read"), url, "v").status_code == 403
    key_id, key = github.public_key(REPO)
    sealed = {"encrypted_value": _sealed(key, "v"), "key_id": key_id}
    assert _gh(github, "ghp-narrow").put(url, json=sealed, timeout=5).status_code == 404
    assert (
        _gh(github, "ghp-narrow").get(f"{github.url}/repos/{REPO}/actions/secrets", timeout=5).status_code
        == 404
    )
    assert _put(_gh(github, scheme="token"), url, "v").status_code == 201
    assert _gh(github, "ghp-read").delete(url, timeout=5).status_code == 403
    assert _gh(github).delete(url, timeout=5).status_code == 204
    assert github.secret(REPO, "MIXPANEL_TOKEN") is None
    assert _gh(github).get(url, timeout=5).status_code == 404
    unknown_version = {"X-GitHub-Api-Version": "1999-01-01"}
    assert _gh(github).get(url, headers=unknown_version, timeout=5).status_code == 400


def test_github_faults_fail_then_apply_then_drop(github: FakeGitHub) -> None:
    session = _gh(github)
    url = f"{github.url}/repos/{REPO}/actions/secrets/MIXPANEL_TOKEN"
    github.fail_next(1, 429, method="PUT", headers={"Retry-After": "1"})
    github.apply_then_drop(method="PUT")

    limited = _put(session, url, "v-1")
    with pytest.raises(requests.ConnectionError):
        _put(session, url, "v-2")

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert github.secret_value(REPO, "MIXPANEL_TOKEN") == "v-2"
    assert [c.fault for c in github.calls("PUT")] == ["fail", "apply_then_drop"]
    assert _put(session, url, "v-3").status_code == 204


# ---------------------------------------------------------------------- AWS (moto behind the proxy)


def test_aws_create_secret_with_tags_and_a_taken_name(aws: FakeAWS) -> None:
    client = aws.client()
    tags = [{"Key": "mpsa:slack_user", "Value": "U1"}]
    created = client.create_secret(Name="mpsa/etl", SecretString="t-1", Tags=tags, KmsKeyId="alias/mpsa")

    with pytest.raises(ClientError) as taken:
        client.create_secret(Name="mpsa/etl", SecretString="t-2")
    described = client.describe_secret(SecretId="mpsa/etl")

    assert taken.value.response["Error"]["Code"] == "ResourceExistsException"
    assert described["ARN"] == created["ARN"]
    assert described["Tags"] == tags
    assert described["KmsKeyId"] == "alias/mpsa"
    assert client.get_secret_value(SecretId="mpsa/etl")["SecretString"] == "t-1"
    assert aws.proxy.actions() == ["CreateSecret", "CreateSecret", "DescribeSecret", "GetSecretValue"]


def test_aws_put_secret_value_moves_the_stages(aws: FakeAWS) -> None:
    client = aws.client()
    client.create_secret(Name="mpsa/etl", SecretString="t-1")
    put = client.put_secret_value(SecretId="mpsa/etl", SecretString="t-2")

    current = client.get_secret_value(SecretId="mpsa/etl", VersionStage="AWSCURRENT")
    previous = client.get_secret_value(SecretId="mpsa/etl", VersionStage="AWSPREVIOUS")

    assert (current["SecretString"], previous["SecretString"]) == ("t-2", "t-1")
    assert current["VersionId"] == put["VersionId"]
    assert "AWSCURRENT" in put["VersionStages"]


def test_aws_sts_identity_and_reset_between_tests(aws: FakeAWS) -> None:
    identity = aws.client("sts").get_caller_identity()
    assert identity["Account"].isdigit()
    client = aws.client()
    client.create_secret(Name="mpsa/etl", SecretString="t-1")

    aws.reset()

    assert client.list_secrets()["SecretList"] == []
    assert aws.proxy.actions() == ["ListSecrets"]


def test_aws_proxy_denies_and_fails_without_touching_moto(aws: FakeAWS) -> None:
    client = aws.client()
    aws.proxy.deny_next(action="CreateSecret")
    aws.proxy.fail_next(1, 500, where=action_is("CreateSecret"))

    codes = []
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            client.create_secret(Name="mpsa/etl", SecretString="t-1")
        codes.append(
            (
                refused.value.response["Error"]["Code"],
                refused.value.response["ResponseMetadata"]["HTTPStatusCode"],
            )
        )

    assert codes == [("AccessDeniedException", 400), ("InternalFailure", 500)]
    assert client.list_secrets()["SecretList"] == []
    client.create_secret(Name="mpsa/etl", SecretString="t-1")
    assert [c.fault for c in aws.proxy.calls()] == ["fail", "fail", None, None]


def test_aws_proxy_applies_then_drops_and_can_be_unreachable(aws: FakeAWS) -> None:
    client = aws.client()
    aws.proxy.apply_then_drop(where=action_is("CreateSecret"))

    with pytest.raises(ConnectionClosedError):
        client.create_secret(Name="mpsa/etl", SecretString="t-1")
    assert client.get_secret_value(SecretId="mpsa/etl")["SecretString"] == "t-1"

    aws.proxy.stop()
    with pytest.raises(EndpointConnectionError):
        client.get_secret_value(SecretId="mpsa/etl")
    aws.start()
    assert client.get_secret_value(SecretId="mpsa/etl")["SecretString"] == "t-1"


def test_aws_environment_points_a_default_boto3_client_at_the_proxy(
    aws: FakeAWS, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in aws.environment().items():
        monkeypatch.setenv(key, value)
    boto3.client("secretsmanager").create_secret(Name="mpsa/etl", SecretString="t-1")
    assert aws.proxy.actions() == ["CreateSecret"]
