"""Thin Slack listeners: translate payloads into calls on the flows (`bot.service`, `bot.manage`)."""

from slack_bolt import App

from bot.manage import ManageFlow
from bot.replace import ReplaceFlow
from bot.rescope import RescopeFlow
from bot.service import CreationFlow
from handlers import commands, home, manage, options, submission


def register_all(
    app: App, flow: CreationFlow, lifecycle: ManageFlow, rescope: RescopeFlow, replace: ReplaceFlow
) -> None:
    commands.register(app, flow, lifecycle)
    submission.register(app, flow)
    options.register(app, flow)
    manage.register(app, lifecycle, rescope, replace)
    home.register(app, flow, lifecycle)
