"""Loopback fakes of Slack, Mixpanel, Vault, GitHub and AWS (moto); `bot_environment` points a `python app.py`
at the Slack and Mixpanel ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.mixpanel import FakeMixpanel
    from tests.fakes.slack_api import FakeSlack


def bot_environment(slack: FakeSlack, mixpanel: FakeMixpanel, *, signing_secret: str) -> dict[str, str]:
    """The settings a bot process needs to talk to these two fakes, read from the fakes themselves."""
    [organization_id] = mixpanel.organizations
    return {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
        "MIXPANEL_SERVICE_ACCOUNT_USERNAME": mixpanel.username,
        "MIXPANEL_SERVICE_ACCOUNT_SECRET": mixpanel.secret,
        "MIXPANEL_ORGANIZATION_ID": str(organization_id),
        "SLACK_API_URL": slack.base_url,
        "MIXPANEL_API_URL": mixpanel.base_url,
    }
