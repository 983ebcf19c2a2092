"""Thin Slack listeners: translate payloads into calls on the flows, and results back."""

from slack_bolt import App

from bot.approvals import ApprovalFlow
from bot.service import CreationFlow
from handlers import approvals, commands, options, submission


def register_all(app: App, flow: CreationFlow, approval_flow: ApprovalFlow | None = None) -> None:
    commands.register(app, flow)
    submission.register(app, flow)
    options.register(app, flow)
    if approval_flow is not None:
        approvals.register(app, approval_flow)
