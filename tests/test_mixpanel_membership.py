"""Project membership and single-account calls of the Mixpanel client, against the loopback fake."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import requests
from pydantic import SecretStr

from bot.mixpanel.client import MixpanelClient
from bot.mixpanel.models import ProjectGrant
from bot.models import Role
from tests import clock
from tests.conftest import MP_SECRET, MP_USERNAME, ORG_ID


@pytest.fixture
def client(mixpanel):
    client = MixpanelClient(mixpanel.base_url, MP_USERNAME, SecretStr(MP_SECRET), sleep=lambda _: None)
    yield client
    client.close()


def test_add_and_remove_use_their_two_different_bodies(client, mixpanel):
    account = mixpanel.add_account(ORG_ID, "etl", role="analyst", projects=[{"id": 3001, "role": "analyst"}])
    client.add_to_projects(ORG_ID, [account["id"]], (ProjectGrant(3002, Role.CONSUMER),))
    assert mixpanel.membership(account["id"]) == {3001: "analyst", 3002: "consumer"}
    client.remove_from_projects(ORG_ID, [account["id"]], [3001])
    assert mixpanel.membership(account["id"]) == {3002: "consumer"}
    added, removed = (mixpanel.wait_for(route)[0] for route in ("add_to_project", "remove_from_project"))
    assert added.json == {
        "service_account_ids": [account["id"]],
        "projects": [{"id": 3002, "role": "consumer"}],
    }
    assert removed.json == {"projects": [{"id": 3001, "service_account_ids": [account["id"]]}]}
    assert mixpanel.schema_violations == []


def test_the_fake_refuses_a_body_of_the_other_shape(mixpanel):
    account = mixpanel.add_account(ORG_ID, "etl", projects=[{"id": 3001, "role": "analyst"}])
    wrong = {"service_account_ids": [account["id"]], "projects": [{"id": 3001, "role": "analyst"}]}
    answer = requests.post(
        f"{mixpanel.base_url}/organizations/{ORG_ID}/service-accounts/remove-from-project",
        json=wrong,
        auth=(MP_USERNAME, MP_SECRET),
        timeout=5,
    )
    assert answer.status_code == 400
    assert mixpanel.membership(account["id"]) == {3001: "analyst"}
    assert len(mixpanel.schema_violations) == 1


def test_project_listing_carries_the_role_and_last_use(client, mixpanel):
    first = mixpanel.add_account(ORG_ID, "a", role="analyst", projects=[{"id": 3001, "role": "analyst"}])
    mixpanel.add_account(ORG_ID, "b", role="consumer", projects=[{"id": 3002, "role": "consumer"}])
    used = clock.iso_z(clock.now() - timedelta(days=3))
    mixpanel.use_account(first["id"], used)
    members = client.list_project_service_accounts(3001)
    assert [(m.id, m.role, m.last_used) for m in members] == [(first["id"], "analyst", used)]
    assert "token" not in json.dumps(mixpanel.wait_for("project_list")[0].json or {})


def test_get_and_delete_say_when_an_account_is_already_gone(client, mixpanel):
    expires = clock.iso_z(clock.days_from_now(30))
    account = mixpanel.add_account(ORG_ID, "etl", expires=expires)
    assert client.get_service_account(ORG_ID, account["id"]).expires == expires
    mixpanel.delete_outside(account["id"])
    assert client.get_service_account(ORG_ID, account["id"]) is None
    assert client.delete_if_present(ORG_ID, account["id"]) is False
    other = mixpanel.add_account(ORG_ID, "other")
    assert client.delete_if_present(ORG_ID, other["id"]) is True
    assert other["id"] in mixpanel.deleted_accounts
