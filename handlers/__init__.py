"""Thin Slack listeners: translate payloads into calls on the flows, and results back.

One `register(app, ...)` per feature module, each handed only the flows it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt import App

from bot.rotate.clicks import RotationClicks
from handlers import approvals, commands, govern, home, manage, options, rotate, submission

if TYPE_CHECKING:
    from bot.runtime import Runtime


def register_all(app: App, runtime: Runtime) -> None:
    commands.register(app, runtime.flow, runtime.manage)
    submission.register(app, runtime.flow)
    options.register(app, runtime.flow)
    manage.register(app, runtime.manage, runtime.rescope, runtime.replace)
    home.register(app, runtime.flow, runtime.manage)
    govern.register(app, runtime.manage, runtime.governance)
    if runtime.rotation is not None:
        rotate.register(app, RotationClicks(runtime.rotation.flow))
    if runtime.approvals is not None:
        approvals.register(app, runtime.approvals)
