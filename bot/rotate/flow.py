"""One account's rotation, step by step (bot/rotate/states.py has the states; docs/rotation.md the story).

Each run takes the rotation's claim, moves it as far as it can go now, and drops the claim. Every move is a
compare-and-set that writes its audit row; the audit channel hears of it after that write. What a run
that died left behind is settled by the next one:
- died during the create: the successor request is `submitted`/`uncertain`; the sweeper finds and deletes
  whatever Mixpanel made, and the rotation makes a new successor (a new attempt) once it is settled;
- died after the create, before the write: the successor's token died with the run; the sweeper deletes
  the successor, the owner is told, and the rotation makes a new one;
- died after the write: the sweeper reads the store back; the bot's mark there means it was delivered.
The successor is made in the create flow's own steps (the same request states, the same write, read-back
and compensation: bot/create/secret_store.py), as a request that `replaces` the old one.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from bot.create.account import new_account_body
from bot.create.flow import CreationFlow
from bot.create.secret_store import NotStored, Stored
from bot.db.schema import AuditEvent, RequestState, StoredRequest
from bot.db.store import AlreadyClaimed, StateMoved
from bot.destinations.base import DestinationError, Failure, Replaced
from bot.manage.store import LifecycleStore
from bot.mixpanel.catalog import OrganizationUnknown
from bot.mixpanel.client import MixpanelError
from bot.models import AccountSpec, Requester, Standing
from bot.policy.access import Decision, decide
from bot.redaction import redactor
from bot.remind.flow import OWNER_PHRASES, OwnerStatus, look_up_owner
from bot.rotate import messages as say
from bot.rotate.approval import RotationApproval
from bot.rotate.notices import RotationNotices
from bot.rotate.overlap import ROTATION_ACTOR, OverlapSteps
from bot.rotate.schedule import RETRY_AFTER, due_at, rotation_settings, stored_spec, successor_spec
from bot.rotate.states import RotationState
from bot.rotate.store import Rotation, RotationMoved, RotationStore

log = logging.getLogger(__name__)

STEP_LEASE = timedelta(minutes=10)  # a run holds a rotation this long at most before another may settle it
# Successor requests that ended without an account (or with one deleted again): a new attempt may start.
SETTLED_WITHOUT_ACCOUNT = (RequestState.FAILED, RequestState.DELETED)
# A successor's approval request that ended without a yes to act on (a withdrawn yes included): it stops.
ENDED_UNAPPROVED = (RequestState.DENIED, RequestState.EXPIRED, RequestState.CANCELLED, RequestState.WITHDRAWN)


class RotationFlow(OverlapSteps):
    def __init__(
        self, creation: CreationFlow, records: LifecycleStore, rotations: RotationStore, holder: str
    ):
        self.d = creation.d
        self.audit = creation.audit
        self.cleanup = creation.cleanup
        self.secrets = creation.account_creation.secrets
        self.records = records
        self.rotations = rotations
        self.holder = holder
        self.approvals: RotationApproval | None = None  # set by bot/runtime.py when approval is configured
        self._local = threading.local()  # per advance(): the states it moved through
        self.notices = RotationNotices(self.d.background_slack, lambda: self.d.policy)

    # --- one account --------------------------------------------------------------------------------

    def advance(self, old: StoredRequest, now: datetime, *, force: bool = False) -> list[RotationState]:
        """Move this account's rotation as far as it goes now; the states it passed through (empty: it
        waits, or another run holds it). `force` (Rotate now) starts it before it is due."""
        rotation = self.rotations.get(old.id)
        if (rotation is None or not rotation.began) and self.rotations.written_over([old.id]):
            return []  # a Replace… wrote a newer account into its secret: that one is rotated, not this
        if rotation is None:
            settings = rotation_settings(self.d.policy, old)
            start = due_at(old, settings) if settings else None
            if settings is None or (start is None and not force):
                return []
            rotation = self.rotations.open(old.id, due_at=min(start or now, now), now=now)
            if rotation is None:
                return []  # another run opened it
        if rotation.finished:
            return []
        taken = self.rotations.take(old.id, (rotation.state,), holder=self.holder, now=now, lease=STEP_LEASE)
        if taken is None:
            return []
        self._local.passed = []
        try:
            while True:
                moved = self._step(old, taken, now, force=force)
                if moved is None or moved.state is taken.state:
                    return self._local.passed
                taken = moved
        except RotationMoved as moved:
            log.info("Rotation of %s moved to %s under another run", old.id, moved.actual)
            return self._local.passed
        finally:
            self.rotations.release(taken, self.holder)

    def _step(self, old: StoredRequest, rotation: Rotation, now: datetime, *, force: bool) -> Rotation | None:
        state = rotation.state
        if state is RotationState.FAILED:
            if not force and now < rotation.updated_at + RETRY_AFTER:
                return None
            return self._move(
                old, rotation, RotationState.DUE, now, detail="tried again", **self._fresh(rotation)
            )
        if state is RotationState.DUE:
            return self._create(old, rotation, now)
        if state is RotationState.SUCCESSOR_CREATED:
            return self._settle_successor(old, rotation, now)
        if state is RotationState.WRITTEN:
            return self._verify_written(old, rotation, now)
        if state is RotationState.VERIFIED:
            return self._begin_overlap(old, rotation, now)
        if state is RotationState.OVERLAPPING:
            return self._end_overlap(old, rotation, now)
        if state is RotationState.WAITING_FOR_APPROVAL:
            return self._after_approval(old, rotation, now)
        return None

    @staticmethod
    def _fresh(rotation: Rotation) -> dict:
        """A new attempt: a new successor will be made."""
        return {
            "attempt": rotation.attempt + 1,
            "successor_request_id": None,
            "successor_account_id": None,
            "successor_username": None,
            "destination_version": None,
            "failure": None,
        }

    def _move(
        self,
        old: StoredRequest,
        rotation: Rotation,
        target: RotationState,
        now: datetime,
        *,
        detail: str,
        **values,
    ) -> Rotation:
        """The compare-and-set with its audit row; then the audit channel hears of it."""
        moved = self.audit.record(
            lambda: self.rotations.move(
                rotation, target, holder=self.holder, now=now, detail=detail, **values
            ),
            say.audit_announcement(
                str(target).replace("_", " "),
                owner_id=old.owner,
                old=old.mixpanel_username or old.username,
                detail=detail,
            ),
        )
        self._local.passed.append(target)  # what this advance() moved through, for its caller
        return moved

    # --- due: judge and create the successor ----------------------------------------------------------

    def _create(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation | None:
        if rotation_settings(self.d.policy, old) is None:
            return None  # rotation was turned off since it became due: nothing new is made
        if rotation.successor_request_id is not None:
            earlier = self.d.store.get(rotation.successor_request_id)
            if earlier is None or earlier.state not in SETTLED_WITHOUT_ACCOUNT:
                return None  # an interrupted create is still being settled by the sweeper
            rotation = self.rotations.update(rotation, holder=self.holder, now=now, **self._fresh(rotation))
        name = old.mixpanel_username or old.username
        if (old.destination or "") not in self.d.destinations:
            return self._fail(old, rotation, say.Stop.DESTINATION_GONE, old.destination or "?", now)
        spec = successor_spec(self.d.policy, old, now)
        judged = self._judge(old, spec, now)
        if judged is None:
            return None  # Slack or Mixpanel could not be asked: the next run asks again
        decision, status, organization_id = judged
        if decision.refusal is not None or decision.violations:
            reasons = [v.message for v in decision.violations] or [str(decision.refusal)]
            return self._fail(old, rotation, say.Stop.POLICY, " ".join(reasons), now)
        if status is not OwnerStatus.PRESENT and rotation.attempt == 1:
            self.notices.admins(say.ownerless_text(name, old.owner, OWNER_PHRASES[status]))
        if decision.needs_approval:
            return self._ask_approval(old, rotation, spec, now)
        claimed = self.d.store.claim(
            submission_key=f"rotation:{old.id}:{rotation.attempt}",
            requester_id=old.owner,
            team_id=old.team_id,
            channel_id=None,
            spec=spec,
            within_quota=lambda _recent: True,
            now=now,
            replaces_request_id=old.id,
            actor_id=ROTATION_ACTOR,
            detail=f"successor of {name}",
        )
        if isinstance(claimed, AlreadyClaimed):
            self.rotations.update(
                rotation, holder=self.holder, now=now, successor_request_id=claimed.request.id
            )
            return None  # an earlier run of this attempt stored it: settled as above next time
        successor = claimed.request  # type: ignore[union-attr]
        rotation = self.rotations.update(
            rotation, holder=self.holder, now=now, successor_request_id=successor.id
        )
        return self._make(old, rotation, successor, organization_id, now)

    def _judge(
        self, old: StoredRequest, spec: AccountSpec, now: datetime
    ) -> tuple[Decision, OwnerStatus, int] | None:
        """The successor judged by today's policy as a request of the owner's; None when Slack or Mixpanel
        cannot be asked now."""
        status = look_up_owner(self.d.directory, self.d.policy, self.d.installation, old.owner)
        if status is None:
            return None
        # A rotation is the machine's, not a person's: an owner who left is judged as a plain member.
        judged = Requester(user_id=old.owner, standing=Standing.MEMBER, team_id=self.d.installation.team_id)
        if status is OwnerStatus.PRESENT:
            present = self.d.directory.try_requester(old.owner, patient=True)
            if present is None:
                return None  # their standing and groups could not be read
            judged = present
        try:
            organization_id = self.d.catalog.organization_id()
            known = [project.id for project in self.d.catalog.get().projects]
        except (MixpanelError, OrganizationUnknown) as error:
            log.warning("Rotation of %s waits: Mixpanel cannot be asked (%s)", old.id, error)
            return None
        decision = decide(
            self.d.policy,
            judged,
            spec,
            installation=self.d.installation,
            today=now.date(),
            recent_creations=0,  # the owner's daily limit is for people's requests, not for rotations
            known_project_ids=known,
        )
        return decision, status, organization_id

    def _make(
        self,
        old: StoredRequest,
        rotation: Rotation,
        successor: StoredRequest,
        organization_id: int,
        now: datetime,
    ) -> Rotation | None:
        """Create the stored successor in Mixpanel, then write it to the store and read it back."""
        name = old.mixpanel_username or old.username
        successor = self.d.store.record_create_attempt(successor.id, now=now)
        try:
            account = self.d.mixpanel.create_service_account(organization_id, new_account_body(successor))
        except MixpanelError as error:
            if error.ambiguous:
                # Maybe made, with a token nobody holds: the sweeper finds and deletes it; then a new attempt.
                self.d.store.record_ambiguous_create(successor.id, str(error), now=now)
                return None
            self.d.store.transition(
                successor.id,
                RequestState.FAILED,
                expected=(RequestState.SUBMITTED,),
                event=AuditEvent.MIXPANEL_ERROR,
                detail=str(error),
            )
            return self._fail(old, rotation, say.Stop.MIXPANEL, error.reason or str(error.kind), now)
        redactor.add(account.token.get_secret_value())
        try:
            successor = self.d.store.transition(
                successor.id,
                RequestState.CREATED,
                expected=(RequestState.SUBMITTED,),
                event=AuditEvent.CREATED,
                mixpanel_account_id=account.id,
                mixpanel_username=account.username,
            )
            rotation = self._move(
                old,
                rotation,
                RotationState.SUCCESSOR_CREATED,
                now,
                detail=f"successor {account.username} (id {account.id})",
                successor_account_id=account.id,
                successor_username=account.username,
            )
        except (SQLAlchemyError, StateMoved, RotationMoved) as error:
            log.error(
                "Rotation of %s: could not record successor %s (%s); deleting it", name, account.id, error
            )
            self.d.mixpanel.delete_if_present(organization_id, account.id)
            return None
        replacing = (
            Replaced(old.mixpanel_account_id, old.mixpanel_username) if old.mixpanel_account_id else None
        )
        outcome = self.secrets.put(successor, organization_id, account, replacing=replacing)
        del account
        if isinstance(outcome, Stored):
            self.d.store.transition(
                successor.id,
                RequestState.DELIVERED,
                expected=(RequestState.CREATED,),
                event=AuditEvent.TOKEN_DELIVERED,
                detail=f"stored in {outcome.where} (rotation)",
                secret_version=outcome.receipt.version,
            )
            written = self._move(
                old,
                rotation,
                RotationState.WRITTEN,
                now,
                detail=f"new version of {outcome.where}",
                destination_version=outcome.receipt.version,
                written_at=now,
            )
            return self._move(old, written, RotationState.VERIFIED, now, detail="read back", verified_at=now)
        if isinstance(outcome, NotStored):
            self.cleanup.orphan_and_delete(
                successor,
                organization_id,
                [(successor.mixpanel_account_id or 0, successor.mixpanel_username)],
                expected=(RequestState.CREATED,),
                reason=f"rotation: the token could not be stored in {old.destination}",
                event=AuditEvent.DELIVERY_FAILED,
                detail=f"{old.destination}: {outcome.failure}: {outcome.detail}",
            )
            return self._fail(old, rotation, say.Stop.STORE, str(outcome.failure), now)
        return None  # unsettled: the sweeper reads the store back, and the next run goes on from there

    # --- a successor that today's policy sends for approval ----------------------------------------------

    def _ask_approval(self, old: StoredRequest, rotation: Rotation, spec, now: datetime) -> Rotation | None:
        if self.approvals is None:  # the policy asks for approval but the app has no approval flow
            return self._fail(old, rotation, say.Stop.POLICY, "it needs an approval, and none is set up", now)
        successor = self.approvals.ask(old, spec, rotation.attempt, now)
        if successor is None:
            return self._fail(old, rotation, say.Stop.DENIED, "no approver could be reached", now)
        moved = self._move(
            old,
            rotation,
            RotationState.WAITING_FOR_APPROVAL,
            now,
            detail="today's policy needs an approval for the successor",
            successor_request_id=successor.id,
        )
        self.notices.dm(old.owner, {"text": say.waiting_text(old.mixpanel_username or old.username)})
        return moved

    def _after_approval(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation | None:
        """Approved: the rotation goes on by itself (nobody has to click Create); refused: it stops."""
        successor = self.d.store.get(rotation.successor_request_id or "")
        if successor is None or self.approvals is None:
            return None
        if successor.state is RequestState.APPROVED:
            # Judged again, as a person's claim is: the policy may have changed while the approvers decided.
            judged = self._judge(old, stored_spec(successor), now)
            if judged is None:
                return None
            decision, _, organization_id = judged
            if decision.refusal is not None or decision.violations:
                self.approvals.flow.store.cancel(successor.id, successor.requester_id, now=now)
                reasons = [v.message for v in decision.violations] or [str(decision.refusal)]
                return self._fail(old, rotation, say.Stop.POLICY, " ".join(reasons), now)
            claimed = self.approvals.claim(successor, now)
            if claimed is None:
                return None
            return self._make(old, rotation, claimed, organization_id, now)
        if successor.state in ENDED_UNAPPROVED:
            return self._fail(old, rotation, say.Stop.DENIED, str(successor.state), now)
        if successor.state is RequestState.DELIVERED:  # the owner clicked Create themselves: it is stored
            return self._move(
                old,
                rotation,
                RotationState.SUCCESSOR_CREATED,
                now,
                detail=f"successor {successor.mixpanel_username}, created on its owner's click",
                successor_account_id=successor.mixpanel_account_id,
                successor_username=successor.mixpanel_username,
            )
        if successor.state in SETTLED_WITHOUT_ACCOUNT:  # the owner's own Create failed, and was told why
            return self._fail(
                old, rotation, say.Stop.MIXPANEL, f"the approved successor was {successor.state}", now
            )
        return None  # still pending, or being made on the owner's click

    # --- a later run: settle what an earlier one left -------------------------------------------------

    def _settle_successor(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation | None:
        """A successor exists, and the run that made it is gone (with its token)."""
        successor = self.d.store.get(rotation.successor_request_id or "")
        if successor is None:
            return None
        if successor.state is RequestState.DELIVERED:  # the sweeper found the bot's write in the store
            written = self._move(
                old,
                rotation,
                RotationState.WRITTEN,
                now,
                detail="found in the store after an interrupted run",
                destination_version=successor.secret_version,
                written_at=successor.store_started_at or now,
            )
            return self._move(old, written, RotationState.VERIFIED, now, detail="read back", verified_at=now)
        if successor.state in SETTLED_WITHOUT_ACCOUNT:
            moved = self._move(
                old,
                rotation,
                RotationState.DUE,
                now,
                detail=f"successor {successor.mixpanel_username} lost before the write; deleted",
                **self._fresh(rotation),
            )
            self.notices.dm(
                old.owner,
                {"text": say.lost_text(old.mixpanel_username or old.username, old.destination or "")},
            )
            return moved
        return None  # the sweeper has not settled it yet

    def _verify_written(self, old: StoredRequest, rotation: Rotation, now: datetime) -> Rotation | None:
        """Written, and the run died before reading back: the store decides, by the bot's mark."""
        destination = self.d.destinations.get(old.destination or "")
        if destination is None or rotation.successor_account_id is None:
            return None
        try:
            found = destination.find_mark(
                old.secret_name or "", rotation.successor_account_id, since=rotation.written_at or now
            )
        except DestinationError:
            return None  # unreadable now: the next run reads again
        if found is not None:
            return self._move(old, rotation, RotationState.VERIFIED, now, detail="read back", verified_at=now)
        self._retire_successor(rotation, now)  # the store does not hold it: its token is lost
        return self._fail(old, rotation, say.Stop.STORE, str(Failure.MISMATCH), now)

    # --- stopping, and telling people -------------------------------------------------------------------

    def _fail(
        self, old: StoredRequest, rotation: Rotation, stop: say.Stop, detail: str, now: datetime
    ) -> Rotation:
        reason = say.stop_reason(stop, detail)
        moved = self._move(old, rotation, RotationState.FAILED, now, detail=reason, failure=reason)
        text = say.stuck_text(
            old.mixpanel_username or old.username,
            reason,
            expires_at=old.expires_at,
            contact=self.d.policy.contact,
        )
        self.notices.dm(old.owner, {"text": text})
        self.notices.admins(f"<@{old.owner}>'s account: {text}")
        return moved
