"""Telling people about a rotation: lasting DMs to the owner and to the policy's admins (never a secret).
Best effort: the audit trail holds the record, and a DM that fails must not stop a rotation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from bot.policy.file import Policy
from bot.slack.delivery import post_lasting

log = logging.getLogger(__name__)


class RotationNotices:
    def __init__(self, client: WebClient, policy: Callable[[], Policy]):
        self._client = client
        self._policy = policy  # today's: read at each notice

    def dm(self, user_id: str, message: dict[str, Any]) -> bool:
        problem = post_lasting(self._client, user_id, message, dm=True)
        if problem:
            log.warning("Could not tell %s about a rotation: %s", user_id, problem)
        return problem is None

    def admins(self, text: str) -> None:
        """The admins named in the policy; admins named by user group hear it in the audit channel."""
        for admin in self._policy().admins.users:
            self.dm(admin, {"text": text})
