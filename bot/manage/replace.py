"""Replace…: Mixpanel cannot extend an account, so a renewal is a new account made by the usual form.

The form opens prefilled with the old account's name, role and projects; its submission is the ordinary
creation (same policy, same delivery of the token to the requester alone), linked to the old request. The
old account is never deleted on its own: once the new one is delivered, the requester is offered a
"Delete the old account" control, and otherwise the old one runs until its own expiry.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.create.messages import FORM_NOT_OPENED, NO_PROJECTS, PROJECTS_UNAVAILABLE
from bot.create.views import Prefill, creation_view, encode_metadata
from bot.db.schema import StoredRequest
from bot.manage import messages as say
from bot.manage.flow import ManageFlow
from bot.manage.permissions import ManageAction
from bot.manage.rescope import judge_account
from bot.manage.views import offer_delete_old_message, parse_target
from bot.models import SubmissionContext, today_in

log = logging.getLogger(__name__)


class ReplaceFlow:
    def __init__(self, manage: ManageFlow):
        self.m = manage
        self.d = manage.d

    def may_replace(self, user_id: str, request_id: str) -> bool:
        """Judged again when the prefilled form comes back: the link must be this person's to make."""
        return judge_account(self.m, user_id, request_id, ManageAction.REPLACE, "replace").refusal is None

    def open(
        self,
        *,
        user_id: str,
        value: Any,
        trigger_id: str,
        context: SubmissionContext,
        into_store: bool = False,
    ) -> str | None:
        """Open the prefilled creation form; or return the sentence that says why not. `into_store` (Move
        into a secret store…): the form offers only the secret stores this person may pick."""
        target = parse_target(value)
        judged = judge_account(
            self.m, user_id, target.request_id if target else None, ManageAction.REPLACE, "replace"
        )
        if judged.refusal is not None or judged.request is None or judged.entitlement is None:
            return judged.refusal or say.UNKNOWN_ACCOUNT
        entitlement = judged.entitlement
        if into_store:
            if not entitlement.destinations:
                return say.NO_STORE_FOR_YOU.format(contact=self.d.policy.contact)
            entitlement = replace(entitlement, to_me=False)
        requester = self.d.directory.try_requester(user_id)
        snapshot = self.d.catalog.cached()
        old = judged.request
        metadata = encode_metadata(
            SubmissionContext(
                user_id=user_id,
                team_id=context.team_id,
                channel_id=context.channel_id,
                response_url=context.response_url,
                replaces_request_id=old.id,
            )
        )
        view = creation_view(
            entitlement=entitlement,
            projects=snapshot.projects if snapshot else None,
            today=today_in(requester.timezone if requester else "UTC", self.d.clock()),
            metadata=metadata,
            projects_unavailable_text=PROJECTS_UNAVAILABLE.format(contact=self.d.policy.contact),
            no_projects_text=NO_PROJECTS.format(contact=self.d.policy.contact),
            prefill=Prefill(username=old.username, role=old.role, project_ids=old.project_ids),
            fixed_destination=self._where(old),
        )
        try:
            self.d.slack.views_open(trigger_id=trigger_id, view=view)
        except (SlackClientError, OSError) as error:
            log.warning("views.open for a replacement failed: %s", type(error).__name__)
            return FORM_NOT_OPENED
        return None

    def _where(self, old: StoredRequest) -> str | None:
        """Where the old account's credentials went, for the form; None when they went to the person."""
        destination = self.d.destinations.get(old.destination or "")
        if destination is None or not old.secret_name:
            return None
        return destination.describe(old.secret_name, None)

    def after_delivery(self, request: StoredRequest, context: SubmissionContext) -> None:
        """A creation was delivered: refresh the App Home if it started there (no channel), and, for a
        replacement, offer to delete the old account."""
        if context.channel_id is None and context.response_url is None:
            self.m.run(f"home:{request.requester_id}", lambda: self.m.publish_home(request.requester_id))
        if request.replaces_request_id:
            self.offer_delete_old(request, context)

    def offer_delete_old(self, request: StoredRequest, context: SubmissionContext) -> None:
        """After the replacement's token was delivered: offer, privately, to delete the old account."""
        old = self.m.records.get(request.replaces_request_id or "")
        if old is None or old.mixpanel_account_id is None:
            return
        message = offer_delete_old_message(
            old_username=old.mixpanel_username or old.username,
            new_username=request.mixpanel_username or request.username,
            old_request_id=old.id,
            old_account_id=old.mixpanel_account_id,
        )
        self.d.delivery.to_requester(context, message)
