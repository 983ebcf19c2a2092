"""The overlap and the old account's end: the steps of a rotation once its successor is verified in the
store (a part of RotationFlow, bot/rotate/flow.py, which provides the store, the claim and the moves)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.audit.trail import AuditTrail
from bot.db.schema import RequestState, StoredRequest
from bot.dependencies import FlowDependencies
from bot.manage.store import AccountRef, LifecycleStore
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.policy.file import DeleteOld, RotationSettings
from bot.rotate import messages as say
from bot.rotate.notices import RotationNotices
from bot.rotate.schedule import Fate, OldAccountPlan, old_account_plan, rotation_settings
from bot.rotate.states import RotationState
from bot.rotate.store import Rotation, RotationStore

log = logging.getLogger(__name__)

ROTATION_ACTOR = "rotation"  # who acted, in the audit trail, for what a rotation does by itself


def _parse(moment: str | None) -> datetime | None:
    if not moment:
        return None
    try:
        return datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None


class OverlapSteps:
    """Mixed into RotationFlow, which sets these and defines `_move` (the compare-and-set, audited)."""

    d: FlowDependencies
    audit: AuditTrail
    records: LifecycleStore
    rotations: RotationStore
    notices: RotationNotices
    holder: str
    _move: Callable[..., Rotation]

    def _settings(self, old: StoredRequest) -> RotationSettings:
        """Today's rules for this account; if rotation was turned off since, the global ones, so that a
        rotation under way ends as configured (its successor exists already)."""
        return rotation_settings(self.d.policy, old) or self.d.policy.rotation

    def _follow_owner(self, old: StoredRequest, rotation: Rotation, now: datetime) -> None:
        """Whoever owns the old account owns its successor: an owner who took the old one over while the
        rotation ran (waiting for approval, or in the overlap) gets the successor too. A successor whose own
        owner was changed since it was made is left alone."""
        successor = self.d.store.get(rotation.successor_request_id or "")
        if successor is None or successor.owner_id is not None or successor.requester_id == old.owner:
            return
        name = successor.mixpanel_username or successor.username
        self.audit.record(
            lambda: self.rotations.hand_over(successor, to_owner=old.owner, actor_id=ROTATION_ACTOR, now=now),
            lambda moved: (
                say.audit_announcement(
                    f"successor {name} handed to <@{old.owner}>, who owns the old account now",
                    owner_id=old.owner,
                    old=old.mixpanel_username or old.username,
                )
                if moved
                else None
            ),
        )

    def _begin_overlap(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation:
        self._follow_owner(old, rotation, now)
        settings = self._settings(old)
        delete_old = settings.delete_old
        plan = self.old_account_plan(old, rotation, now, last_used=None)
        moved = self._move(old, rotation, RotationState.OVERLAPPING, now, detail=f"old account: {delete_old}")
        cap = (
            (rotation.verified_at or now) + timedelta(hours=settings.unused_cap_hours)
            if delete_old is DeleteOld.WHEN_UNUSED
            else None
        )
        note = say.delete_note(plan.delete_at, when_unused=delete_old is DeleteOld.WHEN_UNUSED, cap=cap)
        destination = self.d.destinations.get(old.destination or "")
        where = destination.describe(old.secret_name or "", None) if destination else old.destination or ""
        self.notices.dm(
            old.owner,
            say.written_message(
                old.id,
                old=old.mixpanel_username or old.username,
                new=rotation.successor_username or "",
                where=where,
                delete_note=note,
                keep_button=delete_old is not DeleteOld.NEVER,
            ),
        )
        return moved

    def old_account_plan(
        self, old: StoredRequest, rotation: Rotation, now: datetime, *, last_used: datetime | None = None
    ) -> OldAccountPlan:
        """When the old account goes, by today's policy (the earliest, for when_unused)."""
        return old_account_plan(
            self._settings(old),
            verified_at=rotation.verified_at or now,
            kept_until=rotation.kept_until,
            last_used=last_used,
            warned=rotation.cap_warned_at is not None,
            now=now,
        )

    def _end_overlap(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation | None:
        name = old.mixpanel_username or old.username
        self._follow_owner(old, rotation, now)
        if old.state is not RequestState.DELIVERED:  # a person deleted it meanwhile: nothing left to do
            return self._move(old, rotation, RotationState.OLD_DELETED, now, detail=f"already {old.state}")
        if old.mixpanel_account_id is None:
            return None
        successor = self.d.store.get(rotation.successor_request_id or "")
        if successor is not None and successor.state is not RequestState.DELIVERED:
            # A person deleted the successor during the overlap: the old account is the one that works now.
            moved = self._move(
                old,
                rotation,
                RotationState.OLD_KEPT,
                now,
                detail=f"successor {successor.state}; old one kept",
            )
            self.notices.dm(
                old.owner,
                {"text": say.successor_gone_text(name, successor.mixpanel_username or successor.username)},
            )
            return moved
        try:
            organization_id = self.d.catalog.organization_id()
            live = self.d.mixpanel.get_service_account(organization_id, old.mixpanel_account_id)
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Rotation of %s waits: Mixpanel cannot be asked (%s)", name, error)
            return None
        plan = self.old_account_plan(old, rotation, now, last_used=_parse(live.last_used) if live else None)
        if plan.fate is Fate.KEEP:
            return self._move(old, rotation, RotationState.OLD_KEPT, now, detail="delete_old: never")
        if plan.fate is Fate.WARN and plan.delete_at is not None:
            self.rotations.update(rotation, holder=self.holder, now=now, cap_warned_at=now)
            self.notices.dm(
                old.owner,
                {"text": say.cap_warning_text(name, rotation.successor_username or "", plan.delete_at)},
            )
            return None
        if plan.fate is not Fate.DELETE:
            return None
        account = AccountRef(old.mixpanel_account_id, old.mixpanel_username, old)
        claim = self.records.claim_deletion(account, actor_id=ROTATION_ACTOR, basis="rotation", now=now)
        if not claim.won:
            return None  # a person is deleting it right now; the next run records the end
        try:
            deleted = self.d.mixpanel.delete_if_present(organization_id, old.mixpanel_account_id)
        except MixpanelError as error:
            self.records.fail_deletion(account, actor_id=ROTATION_ACTOR, detail=f"rotation; {error.kind}")
            return None
        self.records.finish_deletion(
            account, actor_id=ROTATION_ACTOR, found_gone=not deleted, detail="rotation complete", now=now
        )
        moved = self._move(old, rotation, RotationState.OLD_DELETED, now, detail="old account deleted")
        destination = self.d.destinations.get(old.destination or "")
        where = destination.describe(old.secret_name or "", None) if destination else old.destination or ""
        self.notices.dm(
            old.owner, {"text": say.old_deleted_text(name, rotation.successor_username or "", where)}
        )
        return moved

    def _retire_successor(self, rotation: Rotation, now: datetime) -> None:
        """The store does not hold the successor (overwritten before the read-back): its token is nowhere,
        so its account goes, once, as every lost token's does. If Mixpanel refuses, the deletion is
        recorded as failed, which the account list shows and an admin's Delete takes over."""
        successor = self.d.store.get(rotation.successor_request_id) if rotation.successor_request_id else None
        if successor is None or successor.mixpanel_account_id is None:
            return
        account = AccountRef(successor.mixpanel_account_id, successor.mixpanel_username, successor)
        claim = self.records.claim_deletion(account, actor_id=ROTATION_ACTOR, basis="rotation", now=now)
        if not claim.won:
            return
        try:
            organization_id = self.d.catalog.organization_id()
            deleted = self.d.mixpanel.delete_if_present(organization_id, successor.mixpanel_account_id)
        except (MixpanelError, OrganizationUnknown) as error:
            log.error("Rotation: could not delete successor %s, whose token is lost: %s", account, error)
            self.records.fail_deletion(account, actor_id=ROTATION_ACTOR, detail=f"rotation; {error}")
            return
        self.records.finish_deletion(
            account, actor_id=ROTATION_ACTOR, found_gone=not deleted, detail="its token is lost", now=now
        )
