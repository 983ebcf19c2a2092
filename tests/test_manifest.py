"""manifest.yml is a valid Slack app manifest and matches what the code needs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.slack.scopes import REQUIRED_BOT_SCOPES

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST_PATH = REPO_ROOT / "manifest.yml"
# Slack's published schema lives in shared/reference/, beside the repo (it is not part of it).
SCHEMA_PATH = Path(
    os.environ.get(
        "SLACK_MANIFEST_SCHEMA",
        REPO_ROOT.parent / "shared" / "reference" / "slack-app-manifest.schema.1.0.0.json",
    )
)
EVENTS_PATH = "/slack/events"


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    with MANIFEST_PATH.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), "manifest.yml must be a mapping"
    return data


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not SCHEMA_PATH.is_file():
        message = f"Slack manifest schema not found at {SCHEMA_PATH}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"{message} (CI=true: it must be there)", pytrace=False)
        pytest.skip(message)
    # The schema is JSON, and JSON is YAML.
    with SCHEMA_PATH.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_manifest_matches_slack_schema(manifest: dict[str, Any], schema: dict[str, Any]) -> None:
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator_class.check_schema(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, "manifest.yml does not match Slack's schema:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_metadata_version(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"] == {"major_version": 1, "minor_version": 1}


def test_background_color_is_a_hex_color(manifest: dict[str, Any]) -> None:
    # The schema spells this check `regex` instead of `pattern`, so jsonschema does not enforce it.
    assert re.fullmatch(
        r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", manifest["display_information"]["background_color"]
    )


def test_slash_command(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == ["/mp-service-account"]
    assert commands[0]["usage_hint"] == "[list | list all | help]"
    assert commands[0]["description"] == "Create a Mixpanel service account"


def test_socket_mode_is_on(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_bot_scopes_are_exactly_the_ones_the_code_uses(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]
    bot_scopes = scopes["bot"]
    assert len(bot_scopes) == len(set(bot_scopes)), f"duplicate scopes in manifest.yml: {bot_scopes}"
    assert set(bot_scopes) == REQUIRED_BOT_SCOPES, (
        f"missing from manifest.yml: {sorted(REQUIRED_BOT_SCOPES - set(bot_scopes))}; "
        f"not in bot.slack.scopes.REQUIRED_BOT_SCOPES: {sorted(set(bot_scopes) - REQUIRED_BOT_SCOPES)}"
    )
    assert set(scopes) == {"bot"}, "the app asks for no user or optional scopes"


def test_request_urls_point_at_the_events_endpoint(manifest: dict[str, Any]) -> None:
    interactivity = manifest["settings"]["interactivity"]
    urls = {
        "settings.interactivity.request_url": interactivity["request_url"],
        "settings.interactivity.message_menu_options_url": interactivity["message_menu_options_url"],
    }
    urls["settings.event_subscriptions.request_url"] = manifest["settings"]["event_subscriptions"][
        "request_url"
    ]
    for command in manifest["features"]["slash_commands"]:
        urls[f"features.slash_commands[{command['command']}].url"] = command["url"]
    for where, url in urls.items():
        assert url.startswith("https://"), f"{where} = {url!r} is not https"
        assert url.endswith(EVENTS_PATH), f"{where} = {url!r} does not end with {EVENTS_PATH}"


def test_the_app_home_tab_and_its_event(manifest: dict[str, Any]) -> None:
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened", "user_change"]
