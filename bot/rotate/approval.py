"""A successor that today's policy sends for approval: asked for as a normal request would be (bot/approve),
with the owner as its requester; once approved, claimed by the rotation itself, so that nobody has to
click Create. The approvers see why: it replaces an account about to expire."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.approve import messages as approval_text
from bot.approve.flow import ApprovalFlow
from bot.db.schema import RequestState, StoredRequest
from bot.db.store import AlreadyClaimed, Claimed
from bot.models import AccountSpec
from bot.rotate.messages import when


class RotationApproval:
    def __init__(self, approvals: ApprovalFlow):
        self.flow = approvals

    def ask(self, old: StoredRequest, spec: AccountSpec, attempt: int, now: datetime) -> StoredRequest | None:
        """The successor's request, pending approval (the same one if an earlier run asked already); None
        when no approver could be reached (the request is then ended, as for any request)."""
        approval = self.flow.approval
        name = old.mixpanel_username or old.username
        opened = self.flow.store.open(
            submission_key=f"rotation:{old.id}:{attempt}",
            requester_id=old.owner,
            team_id=old.team_id,
            channel_id=None,
            spec=spec,
            reason=f"Rotation: the successor of {name}, which expires {when(old.expires_at)}",
            approvals_needed=approval.approvals_needed,
            decide_by=now + timedelta(hours=approval.request_ttl_hours),
            within_quota=lambda _recent: True,  # a rotation is not its owner's request
            now=now,
            replaces_request_id=old.id,
        )
        if isinstance(opened, AlreadyClaimed):
            return opened.request  # an earlier run of this attempt asked already
        if not isinstance(opened, Claimed):
            return None  # over quota: never, since rotations are not counted
        record = self.flow.store.get(opened.request.id)
        if record is None:
            return None
        self.flow.creation.audit.announce(
            approval_text.audit_announcement(
                "approval_requested",
                old.owner,
                self.flow.notices.summary(record),
                self.flow.notices.words(record),
            )
        )
        if self.flow.notices.ask_approvers(record) == 0:
            self.flow.store.unreachable(record.id, now=now)
            return None
        return record.request

    def claim(self, successor: StoredRequest, now: datetime) -> StoredRequest | None:
        """Approved → submitted, once, as the requester's Create click would; None if it lost the race
        (the owner clicked Create after all, or the claim window closed), or if today's policy finds the
        approvals too few (then it is pending again, and today's approvers are asked)."""
        if successor.state is not RequestState.APPROVED:
            return None
        # Judged as the owner's own click would be: a yes from someone who is no approver today, or fewer
        # yeses than today's policy needs, does not count; such a request goes back to today's approvers.
        judged = self.flow.judge_claim(successor.id, successor.requester_id)
        if judged.sentence is not None:
            return None
        claimed = self.flow.creation.audit.record(
            lambda: self.flow.store.claim(
                successor.id, successor.requester_id, now=now, lapsed=judged.lapsed, needed=judged.needed
            ),
            lambda record: (
                approval_text.audit_announcement(
                    "claimed",
                    successor.requester_id,
                    f"{self.flow.notices.summary(record)}\nClaimed by the rotation, not by a click.",
                    self.flow.notices.words(record),
                )
                if record
                else None
            ),
        )
        return claimed.request if claimed is not None else None
