"""The secret-store fakes (Vault, GitHub, AWS) behave like the real services, driven by the real clients
(hvac, requests + PyNaCl, boto3), so the bot's destination tests can trust them."""

from __future__ import annotations

from collections.abc import Iterator

import hvac
import hvac.exceptions
import pytest
import requests

from tests.fakes.vault import FakeVault

MPSA_POLICY = {
    "secret/data/mpsa/*": ["create", "read", "update"],
    "secret/metadata/mpsa/*": ["create", "read", "update"],
}

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
