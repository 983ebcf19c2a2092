"""The two rotation buttons, judged again on the server against today's policy and the stored records:
Rotate now (the account list, for an account in a secret store) and Keep the old one a day longer (the
owner's DM). A button carries only the old account's request id; a forged or stale click changes nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.db.schema import RequestState, StoredRequest
from bot.jobs import ShuttingDown
from bot.manage.messages import manage_refusal_text
from bot.manage.permissions import AccountOwnership, ManageAction, may_manage
from bot.rotate import messages as say
from bot.rotate.flow import RotationFlow
from bot.rotate.schedule import rotation_settings
from bot.rotate.states import RotationState

log = logging.getLogger(__name__)

KEEP_LONGER_BY = timedelta(days=1)
UNKNOWN = "That account is not one the bot rotates; nothing was changed."
WRITTEN_OVER = (
    "`{name}` was replaced: a newer account holds its secret, and that one is rotated, not this one. "
    "Nothing was changed."
)
NOT_OVERLAPPING = "The old account is no longer waiting to be deleted, so nothing was changed."


class RotationClicks:
    def __init__(self, flow: RotationFlow):
        self.flow = flow
        self.d = flow.d

    def _judge(
        self, user_id: str, value: object, *, states: tuple[RequestState, ...] = (RequestState.DELIVERED,)
    ) -> tuple[StoredRequest | None, str | None]:
        """The request the button names, if this person may manage it; else the sentence to show."""
        request = self.d.store.get(str(value)[:32]) if isinstance(value, str) else None
        if request is None or request.state not in states:
            return None, UNKNOWN
        if rotation_settings(self.d.policy, request) is None:
            return None, UNKNOWN
        decision = may_manage(
            self.d.policy,
            self.d.directory.try_requester(user_id),
            ManageAction.REPLACE,  # a rotation makes a new account, like Replace…
            AccountOwnership(creator_id=request.owner),
            installation=self.d.installation,
        )
        if not decision.allowed:
            return None, manage_refusal_text(decision.refusal, contact=self.d.policy.contact)  # type: ignore[arg-type]
        return request, None

    def rotate_now(self, user_id: str, value: object) -> str:
        request, refusal = self._judge(user_id, value)
        if request is None:
            return refusal or UNKNOWN
        rotation = self.flow.rotations.get(request.id)
        if rotation is not None and rotation.began:
            return f"`{request.mixpanel_username}` is being rotated already ({rotation.state})."
        if self.flow.rotations.written_over([request.id]):
            return WRITTEN_OVER.format(name=request.mixpanel_username)
        now = self.d.clock()

        def rotate() -> None:
            try:
                self.flow.advance(request, now, force=True)
            except Exception:
                log.exception("Rotate now for %s failed; the next scheduled run goes on", request.id)

        try:
            self.d.jobs.submit(f"rotate:{request.id}", rotate)
        except ShuttingDown:
            return "The bot is restarting; please click Rotate now again in a minute."
        return (
            f":arrows_counterclockwise: Rotating `{request.mixpanel_username}` now; its owner gets a DM at "
            "each step, and the old account is kept until the new one is verified in the store."
        )

    def keep_longer(self, user_id: str, value: object) -> str:
        # A click after the deletion finds the old account closed: it is told so, and nothing changes.
        request, refusal = self._judge(user_id, value, states=(RequestState.DELIVERED, RequestState.CLOSED))
        if request is None:
            return refusal or UNKNOWN
        name = request.mixpanel_username or request.username
        rotation = self.flow.rotations.get(request.id)
        if rotation is None or rotation.state is not RotationState.OVERLAPPING:
            return NOT_OVERLAPPING
        now = self.d.clock()
        scheduled = self.flow.old_account_plan(request, rotation, now).delete_at or now
        kept = self.flow.audit.record(
            lambda: self.flow.rotations.keep_longer(
                request.id, after=scheduled, by=KEEP_LONGER_BY, actor_id=user_id, now=now
            ),
            lambda kept: (
                say.audit_announcement(
                    f"kept a day longer by <@{user_id}>",
                    owner_id=request.owner,
                    old=name,
                    detail=f"until {say.when(kept.kept_until)}",
                )
                if kept
                else None
            ),
        )
        if kept is None or kept.kept_until is None:
            return NOT_OVERLAPPING
        return say.kept_longer_text(name, kept.kept_until)
