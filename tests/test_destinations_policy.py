"""Who may deliver where, judged on the server through the wire: a forged destination, a required store
none of which is open to the person, and the name the form keeps for "To me, in Slack"."""

from __future__ import annotations

import pytest

from bot.create import views
from bot.policy.file import DestinationPolicy, DestinationRequirement, Policy
from tests import clock
from tests.conftest import form_values
from tests.fakes.vault import FakeVault
from tests.test_destinations import VAULT_POLICY, to_store


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


def test_a_required_store_none_of_which_is_open_to_the_person_is_said_on_a_block_the_form_has(bots, vault):
    policy = Policy(
        destinations=[
            DestinationPolicy(
                name="etl-vault",
                kind="vault_kv2",
                url=vault.url,
                allowed={"users": ["USOMEONEELSE"]},
            )
        ],
        destination_required=DestinationRequirement(roles=["analyst"]),
    )
    bot = bots.start(policy=policy, vault_token=vault.add_token(policy=VAULT_POLICY))
    _, view, _ = bot.open_form()
    blocks = {b.get("block_id") for b in view["blocks"]}
    assert views.BLOCK_DESTINATION not in blocks  # no store on offer

    ack = bot.submit(view, form_values(expires_on=clock.form_expiry(30)))

    errors = ack.json()["errors"]
    assert set(errors) <= blocks, "Slack shows an error only beside a block the form has"
    assert "none is open to you" in errors[views.BLOCK_ROLE]
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == []


def test_no_destination_may_take_the_name_of_the_to_me_option():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="To me, in Slack"):
        DestinationPolicy(name=views.TO_ME_VALUE, kind="vault_kv2", url="https://vault.example.com")


def test_a_forged_destination_the_person_may_not_pick_is_refused_and_nothing_is_written(bots, vault):
    policy = Policy(
        destinations=[
            DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url),
            DestinationPolicy(
                name="finance-vault",
                kind="vault_kv2",
                url=vault.url,
                path_prefix="finance/",
                allowed={"users": ["USOMEONEELSE"]},
            ),
        ]
    )
    bot = bots.start(policy=policy, vault_token=vault.add_token(policy={"secret/*": ["create", "read"]}))
    _, view, _ = bot.open_form()
    element = next(b for b in view["blocks"] if b.get("block_id") == views.BLOCK_DESTINATION)["element"]
    assert "finance-vault" not in [o["value"] for o in element["options"]]

    ack = bot.submit(view, to_store("finance-vault"))

    assert ack.json()["response_action"] == "errors"
    assert "may not deliver to that secret store" in ack.json()["errors"][views.BLOCK_DESTINATION]
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == [] and vault.calls("POST") == []


@pytest.mark.parametrize(
    "name",
    [
        "../etl",
        "etl/nightly",
        "%2e%2e%2fetl",
        "ETL-nightly",
        "etl..nightly",
        "etl//nightly",
        "-etl",
        "a" * 64,
        " ",
    ],
)
def test_a_secret_name_that_could_leave_the_prefix_is_refused_inline_and_nothing_is_asked(bots, vault, name):
    policy = Policy(destinations=[DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url)])
    bot = bots.start(policy=policy, vault_token=vault.add_token(policy=VAULT_POLICY))
    _, view, _ = bot.open_form()

    ack = bot.submit(view, to_store("etl-vault", secret_name=name))

    assert ack.json()["response_action"] == "errors"
    assert views.BLOCK_SECRET_NAME in ack.json()["errors"]
    bot.wait_idle()
    assert bot.mixpanel.create_calls() == [] and vault.calls() == []


def test_projects_whose_tokens_must_go_to_a_store_are_not_added_to_an_account_delivered_to_a_person(
    bots, vault
):
    from bot.manage.projects_view import BLOCK_PROJECT_CHOICE
    from tests.lifecycle import mint
    from tests.test_projects import open_projects, options

    policy = Policy(
        destinations=[DestinationPolicy(name="etl-vault", kind="vault_kv2", url=vault.url)],
        destination_required=DestinationRequirement(projects=[3003]),
    )
    bot = bots.start(policy=policy, vault_token=vault.add_token(policy=VAULT_POLICY))
    request = mint(bot)  # to the person, in 3001 and 3002
    view = open_projects(bot, request)
    assert "3003" not in options(view)[0]
    assert "may only be granted to an account whose token went straight into a secret store" in str(view)

    forged = bot.sender.view_submission(
        view, user_id="UALICE", values={BLOCK_PROJECT_CHOICE: ["3002", "3003"]}
    )

    assert forged.json()["response_action"] == "errors"
    bot.wait_idle()
    assert bot.mixpanel.calls("POST", "project") == []
    assert bot.store.get(request.id).project_ids == (3001, 3002)


@pytest.mark.parametrize(
    ("kind", "url_key", "keys"),
    [
        ("vault_kv2", "url", {}),
        ("github_actions", "api_url", {"repository": "acme/analytics"}),
        ("aws_secrets_manager", "endpoint_url", {"region": "eu-west-1"}),
    ],
)
def test_a_store_reached_in_clear_text_over_a_network_is_refused(kind, url_key, keys):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must be https"):
        DestinationPolicy(name="store", kind=kind, **keys, **{url_key: "http://store.example.com:8200"})
    for allowed in ("https://store.example.com", "http://127.0.0.1:8200", "http://localhost:8200"):
        assert DestinationPolicy(name="store", kind=kind, **keys, **{url_key: allowed}).name == "store"
