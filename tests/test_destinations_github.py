"""GitHub Actions destinations through the wire: a GitHub App's installation tokens, environment secrets.
The fake verifies the App's JWT with its public key and decrypts every sealed value it receives."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.policy.file import DestinationPolicy, Policy
from bot.settings import SettingsError
from tests.conftest import ALICE
from tests.fakes.github import FakeGitHub
from tests.lifecycle import open_replace
from tests.test_destinations import assert_token_nowhere_but_the_store, create, the_account, to_store, told

REPO = "acme/analytics"
APP_ID = "424242"
INSTALLATION_ID = "9001"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def github(app_key):
    # The fake knows no personal token the bot holds: only the App's installation tokens work.
    with FakeGitHub(token="ghp-nobody-has-this", repos=(REPO,)) as fake:
        fake.add_app(APP_ID, INSTALLATION_ID, _public(app_key))
        yield fake


def github_policy(github, *, environment: str | None = None) -> Policy:
    return Policy(
        destinations=[
            DestinationPolicy(
                name="gh-ci",
                kind="github_actions",
                repository=REPO,
                environment=environment,
                secret_name_prefix="MP_",
                api_url=github.url,
            )
        ]
    )


def app_settings(key: rsa.RSAPrivateKey, **overrides) -> dict:
    return {
        "github_app_id": APP_ID,
        "github_app_private_key": pem(key),
        "github_app_installation_id": INSTALLATION_ID,
        **overrides,
    }


def test_a_github_app_writes_with_one_installation_token_kept_across_creates(
    bots, github, app_key, debug_logs
):
    bot = bots.start(policy=github_policy(github), **app_settings(app_key))

    _, url = create(bot, to_store("gh-ci"))
    create(bot, to_store("gh-ci", secret_name="etl-hourly"))

    exchanges = github.calls("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens")
    assert [call.status for call in exchanges] == [201], "the installation token is kept until near expiry"
    [installation_token] = github.issued_tokens
    puts = github.calls("PUT")
    assert len(puts) == 4 and all(c.headers["Authorization"] == f"Bearer {installation_token}" for c in puts)
    first, second = bot.runtime.manage.records.delivered(ALICE)[:2]
    tokens = {bot.mixpanel.tokens[r.mixpanel_account_id] for r in (first, second)}
    stored = {github.secret_value(REPO, n) for n in ("MP_ETL_NIGHTLY_SECRET", "MP_ETL_HOURLY_SECRET")}
    assert stored == tokens
    assert "Stored in GitHub Actions gh-ci at acme/analytics" in told(bot, url)
    for token in (*tokens, installation_token, pem(app_key).splitlines()[1]):
        assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_an_installation_token_near_its_expiry_is_exchanged_again(bots, github, app_key):
    from bot.destinations.github_auth import REFRESH_BEFORE_EXPIRY

    # GitHub issues tokens that are already within the refresh margin: each use asks for a fresh one.
    github.add_app(APP_ID, INSTALLATION_ID, _public(app_key), token_lifetime=REFRESH_BEFORE_EXPIRY / 2)
    bot = bots.start(policy=github_policy(github), **app_settings(app_key))

    create(bot, to_store("gh-ci"))

    exchanges = github.calls("POST", "/access_tokens")
    assert len(exchanges) > 1 and len(set(github.issued_tokens)) == len(exchanges)
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET") == the_account(bot)[1]


def test_an_installation_token_github_refuses_is_exchanged_again_and_the_write_lands_once(
    bots, github, app_key
):
    bot = bots.start(policy=github_policy(github), **app_settings(app_key))
    create(bot, to_store("gh-ci"))
    github.revoke_token(github.issued_tokens[0])

    _, url = create(bot, to_store("gh-ci", secret_name="etl-hourly"))

    assert len(github.issued_tokens) == 2
    assert github.secret("acme/analytics", "MP_ETL_HOURLY_SECRET")["writes"] == 1
    assert "Stored in GitHub Actions gh-ci" in told(bot, url)


def test_an_app_the_installation_does_not_know_deletes_the_account(bots, github, app_key):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bot = bots.start(policy=github_policy(github), **app_settings(other))  # signed with the wrong key

    _, url = create(bot, to_store("gh-ci"))

    statuses = [c.status for c in github.calls("POST", "/access_tokens")]
    assert statuses and set(statuses) == {401}  # the inline look and the write each asked, and were refused
    assert github.calls("PUT") == []
    assert len(bot.mixpanel.create_calls()) == 1 and bot.mixpanel.accounts == {}
    assert "could not store its token in gh-ci (the bot is not allowed to write there)" in told(bot, url)


def _public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_a_partial_github_app_stops_the_start_naming_what_is_missing(bots, github, app_key):
    with pytest.raises(SettingsError) as stopped:
        bots.start(policy=github_policy(github), github_app_id=APP_ID, github_app_private_key="not a key")
    problem = str(stopped.value)
    assert "destination gh-ci (github_actions)" in problem
    assert (
        "GITHUB_APP_INSTALLATION_ID" in problem
        and "GITHUB_APP_PRIVATE_KEY (not a PEM RSA private key)" in problem
    )


def test_a_pem_on_one_line_with_escaped_newlines_is_accepted(bots, github, app_key):
    one_line = pem(app_key).replace("\n", "\\n")
    bot = bots.start(policy=github_policy(github), **app_settings(app_key, github_app_private_key=one_line))

    create(bot, to_store("gh-ci"))

    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET") == the_account(bot)[1]


# --- environment secrets -------------------------------------------------------------------------------


def test_environment_secrets_are_sealed_with_the_environments_own_key(bots, github, app_key, debug_logs):
    github.add_environment(REPO, "production")
    bot = bots.start(policy=github_policy(github, environment="production"), **app_settings(app_key))

    _, url = create(bot, to_store("gh-ci"))

    account, token = the_account(bot)
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET", environment="production") == token
    assert (
        github.secret_value(REPO, "MP_ETL_NIGHTLY_USERNAME", environment="production") == account["username"]
    )
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET") is None  # not the repository's own
    assert all("/environments/production/secrets/" in c.path for c in github.calls("PUT"))
    assert "Stored in GitHub Actions gh-ci at acme/analytics environment production" in told(bot, url)
    assert_token_nowhere_but_the_store(bot, token, debug_logs)


def test_an_environment_name_cannot_leave_the_repositorys_url(github):
    from pydantic import ValidationError

    for environment in ("..", "."):
        with pytest.raises(ValidationError):
            github_policy(github, environment=environment)
    with pytest.raises(ValidationError):
        Policy(
            destinations=[
                DestinationPolicy(name="gh", kind="github_actions", repository="../..", api_url=github.url)
            ]
        )


def test_a_github_replace_whose_secret_write_fails_puts_the_old_username_back(bots, github, app_key):

    from tests import clock
    from tests.conftest import form_values

    bot = bots.start(policy=github_policy(github), **app_settings(app_key))
    create(bot, to_store("gh-ci"))
    [old] = bot.runtime.manage.records.delivered(ALICE)
    old_token = bot.mixpanel.tokens[old.mixpanel_account_id]
    form = open_replace(bot, old.id)
    github.fail_next(1, status=500, method="PUT", path_contains="MP_ETL_NIGHTLY_SECRET")

    values = form_values(projects=[3001], expires_on=clock.form_expiry(60))
    bot.submit(form, values)
    bot.wait_idle()

    assert list(bot.mixpanel.accounts) == [old.mixpanel_account_id]  # the new account deleted again
    # The pair in GitHub still works: the old account's username with its secret.
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_USERNAME") == old.mixpanel_username
    assert github.secret_value(REPO, "MP_ETL_NIGHTLY_SECRET") == old_token


def test_doctor_checks_a_github_app_destination_without_writing(bots, github, app_key):
    from bot.doctor.destination_checks import destination_checks
    from bot.doctor.report import Status

    [result] = destination_checks(github_policy(github), bots.settings(**app_settings(app_key)))

    assert result.status is Status.PASS
    assert [c.status for c in github.calls("POST", "/access_tokens")] == [201]
    assert github.calls("PUT") == [] and github.calls("DELETE") == []


def test_a_static_token_github_refuses_is_not_asked_twice_and_the_account_is_deleted(bots, github):
    bot = bots.start(policy=github_policy(github), github_token="ghp-not-a-token-github-knows")

    _, url = create(bot, to_store("gh-ci"))

    looks = github.calls("GET", "MP_ETL_NIGHTLY_USERNAME")
    assert [c.status for c in looks] == [401, 401]  # the inline look and the write's own: no retry of either
    assert github.calls("PUT") == [] and github.calls("POST") == []
    assert bot.mixpanel.accounts == {}
    assert "could not store its token in gh-ci (the bot is not allowed to write there)" in told(bot, url)
