"""Getting a message to one person privately, over whichever Slack path still works.

Order: the slash command's response_url, then chat.postEphemeral in the same channel, then
chat.postEphemeral in the requester's DM with the app. All three are ephemeral: Slack does not keep them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.webhook import WebhookClient

from bot.models import SubmissionContext
from bot.slack.retry import DELIVERY_RETRY_BUDGET, retry_budget

log = logging.getLogger(__name__)

SLACK_RESPONSE_URL_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def post_lasting(client: WebClient, target: str, message: dict[str, Any], *, dm: bool) -> str | None:
    """Post a lasting message (never a secret) to a channel, or to a person's DM. None when Slack took it,
    else the error's name, for the caller's log line."""
    try:
        channel = client.conversations_open(users=target)["channel"]["id"] if dm else target
        client.chat_postMessage(channel=channel, unfurl_links=False, unfurl_media=False, **message)
    except (SlackClientError, OSError, KeyError, TypeError) as error:
        return type(error).__name__
    return None


def _is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def response_url_hosts(slack_api_url: str | None) -> frozenset[str]:
    """Hosts whose response_url the bot will post a token to.

    Slack's own hooks hosts, and, where SLACK_API_URL points elsewhere (a test double or a proxy), that
    host too; a loopback Slack double may serve response URLs on any loopback address and port.
    """
    if not slack_api_url:
        return SLACK_RESPONSE_URL_HOSTS
    host = urlparse(slack_api_url).hostname or ""
    extra = LOOPBACK_HOSTS if _is_loopback(host) else frozenset({host})
    return SLACK_RESPONSE_URL_HOSTS | extra


@dataclass
class DeliveryOutcome:
    path: str | None = None  # which path worked; None: none did
    failures: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return self.path is not None


def _slack_error(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or error.response.status_code)
    return type(error).__name__


class SlackDelivery:
    def __init__(
        self,
        client: WebClient,
        *,
        timeout: float,
        response_url_hosts: frozenset[str] = SLACK_RESPONSE_URL_HOSTS,
        retry_handlers: list[RetryHandler] | None = None,
    ):
        self._client = client
        self._timeout = timeout
        self._response_url_hosts = response_url_hosts
        self._retry_handlers = retry_handlers  # for response_url posts; None: slack_sdk's default

    def _trusted_response_url(self, url: str | None) -> bool:
        if not url:
            return False
        parsed = urlparse(url)
        host = parsed.hostname or ""
        if host in SLACK_RESPONSE_URL_HOSTS:
            return parsed.scheme == "https"
        trusted = host in self._response_url_hosts or (
            _is_loopback(host) and self._response_url_hosts >= LOOPBACK_HOSTS
        )
        # Plain http only ever reaches a double or proxy that SLACK_API_URL named.
        return trusted and parsed.scheme in ("http", "https")

    def to_requester(self, context: SubmissionContext, message: dict[str, Any]) -> DeliveryOutcome:
        """Try each private path in turn; stop at the first that Slack accepts. Rate limits (429) are
        waited out, over all paths together, for at most DELIVERY_RETRY_BUDGET seconds."""
        with retry_budget(DELIVERY_RETRY_BUDGET):
            return self._to_requester(context, message)

    def _to_requester(self, context: SubmissionContext, message: dict[str, Any]) -> DeliveryOutcome:
        outcome = DeliveryOutcome()
        if self._trusted_response_url(context.response_url):
            try:
                webhook = WebhookClient(
                    context.response_url, timeout=self._timeout, retry_handlers=self._retry_handlers
                )
                response = webhook.send_dict(
                    {"response_type": "ephemeral", "replace_original": False, **message}
                )
                if response.status_code == 200:
                    outcome.path = "response_url"
                    return outcome
                outcome.failures.append(f"response_url: HTTP {response.status_code}")
            except (SlackClientError, OSError) as error:
                outcome.failures.append(f"response_url: {type(error).__name__}")
        elif context.response_url:
            outcome.failures.append("response_url: untrusted host")
        if context.channel_id:
            try:
                self._client.chat_postEphemeral(channel=context.channel_id, user=context.user_id, **message)
                outcome.path = "channel"
                return outcome
            except (SlackClientError, OSError) as error:
                outcome.failures.append(f"chat.postEphemeral in channel: {_slack_error(error)}")
        try:
            opened = self._client.conversations_open(users=context.user_id)
            dm_channel = opened["channel"]["id"]
            self._client.chat_postEphemeral(channel=dm_channel, user=context.user_id, **message)
            outcome.path = "dm"
            return outcome
        except (SlackClientError, OSError, KeyError, TypeError) as error:
            outcome.failures.append(f"chat.postEphemeral in DM: {_slack_error(error)}")
        log.warning("Could not reach %s privately: %s", context.user_id, "; ".join(outcome.failures))
        return outcome

    def replace_message(self, response_url: str | None, message: dict[str, Any]) -> bool:
        """Redraw the ephemeral message a button sat in (its response_url); False if Slack did not take it."""
        if not self._trusted_response_url(response_url):
            return False
        try:
            with retry_budget(DELIVERY_RETRY_BUDGET):
                webhook = WebhookClient(
                    response_url, timeout=self._timeout, retry_handlers=self._retry_handlers
                )
                response = webhook.send_dict({"replace_original": True, **message})
        except (SlackClientError, OSError) as error:
            log.warning("Redrawing a message failed: %s", type(error).__name__)
            return False
        if response.status_code != 200:
            log.warning("Redrawing a message failed: HTTP %s", response.status_code)
        return response.status_code == 200

    def tell_user(self, user_id: str, message: dict[str, Any]) -> bool:
        """A direct message that stays (not ephemeral): for news that comes long after the person's request,
        when no response_url or channel of theirs is known any more. Best effort."""
        try:
            channel = self._client.conversations_open(users=user_id)["channel"]["id"]
            self._client.chat_postMessage(channel=channel, unfurl_links=False, unfurl_media=False, **message)
            return True
        except (SlackClientError, OSError, KeyError, TypeError) as error:
            log.warning("Could not send %s a direct message: %s", user_id, _slack_error(error))
            return False

    def announce(self, channel: str, message: dict[str, Any]) -> bool:
        """Post to the audit channel. Best effort: the database row is the record of truth."""
        try:
            self._client.chat_postMessage(channel=channel, unfurl_links=False, unfurl_media=False, **message)
            return True
        except (SlackClientError, OSError) as error:
            log.warning("Could not post to audit channel %s: %s", channel, _slack_error(error))
            return False

    def update_view(self, view_id: str | None, view: dict[str, Any]) -> None:
        """Refresh a modal the requester may already have closed; failure is harmless."""
        if not view_id:
            return
        try:
            self._client.views_update(view_id=view_id, view=view)
        except (SlackClientError, OSError) as error:
            log.info("Could not update view %s: %s", view_id, _slack_error(error))
