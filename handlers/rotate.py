"""Clicks on the rotation buttons: Rotate now (account list, App Home) and Keep the old one a day longer
(the owner's DM). Acked at once; judged and done after the ack (bot/rotate/clicks.py)."""

import logging

from slack_bolt import Ack, App

from bot.jobs import ShuttingDown
from bot.manage.messages import UNEXPECTED
from bot.rotate.clicks import RotationClicks
from bot.rotate.messages import ACTION_KEEP_LONGER, ACTION_ROTATE_NOW
from handlers.clicks import tell_clicker

log = logging.getLogger(__name__)


def register(app: App, clicks: RotationClicks) -> None:
    delivery = clicks.d.delivery

    def answer(body: dict, decide) -> None:
        user_id = body["user"]["id"]
        value = ((body.get("actions") or [{}])[0]).get("value")

        def judge_and_tell() -> None:
            try:
                sentence = decide(user_id, value)
            except Exception:
                log.exception("A rotation click by %s failed unexpectedly", user_id)
                sentence = UNEXPECTED.format(contact=clicks.d.policy.contact)
            tell_clicker(delivery, body, sentence)

        try:
            clicks.d.jobs.submit(f"rotation-click:{user_id}", judge_and_tell)
        except ShuttingDown:
            judge_and_tell()

    @app.action(ACTION_ROTATE_NOW)
    def on_rotate_now(ack: Ack, body: dict) -> None:
        ack()
        answer(body, clicks.rotate_now)

    @app.action(ACTION_KEEP_LONGER)
    def on_keep_longer(ack: Ack, body: dict) -> None:
        ack()
        answer(body, clicks.keep_longer)
