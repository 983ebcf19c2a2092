"""Thin Slack listeners: translate payloads into calls on `bot.service.CreationFlow`, and results back."""

from slack_bolt import App

from bot.service import CreationFlow
from handlers import commands, options, submission


def register_all(app: App, flow: CreationFlow) -> None:
    commands.register(app, flow)
    submission.register(app, flow)
    options.register(app, flow)
