"""A commit whose acknowledgement was lost: the retry finds the bot's own write already there, and the
flow carries on as if the first write had answered (the person keeps a working token, nothing is deleted)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from bot.create import messages
from bot.db.schema import AuditEvent, RequestState
from tests.test_cleanup import NAME
from tests.test_failures import only_request_state, run_flow, said_to_requester


def lose_the_ack_once(bot, target: RequestState) -> None:
    bot.runtime.flow.d.write_retry_delays = (0.01,)
    store = bot.runtime.flow.d.store
    real = store.transition
    lost = []

    def transition(request_id, new_state, **kw):
        row = real(request_id, new_state, **kw)
        if new_state is target and not lost:
            lost.append(request_id)  # committed, but the connection dropped before the answer came back
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return row

    store.transition = transition


@pytest.mark.parametrize("target", [RequestState.CREATED, RequestState.DELIVERED])
def test_a_lost_commit_acknowledgement_still_counts_as_written(bot, target):
    lose_the_ack_once(bot, target)
    run_flow(bot, username=NAME)
    said = said_to_requester(bot)
    assert only_request_state(bot) is RequestState.DELIVERED
    assert len(bot.mixpanel.accounts) == 1  # recorded, delivered, never deleted
    assert not bot.mixpanel.delete_calls()
    token = bot.mixpanel.created_tokens()[-1]
    assert token in bot.slack.all_recorded_text()  # in the modal or a private message
    assert not any("will not work" in s or "went wrong" in s.lower() for s in said)
    events = [entry["event"] for entry in bot.store.audit_trail()]
    assert events.count("created") == 1 and events.count("token_delivered") == 1


def test_a_request_the_sweeper_closed_before_the_create_is_told_plainly(bot):
    store = bot.runtime.flow.d.store
    real = store.record_create_attempt

    def swept_first(request_id, **kw):
        # As if STALE_REQUEST_SECONDS had passed while the bot waited on Slack before the create.
        store.transition(
            request_id,
            RequestState.FAILED,
            expected=(RequestState.SUBMITTED,),
            event=AuditEvent.MIXPANEL_ERROR,
        )
        return real(request_id, **kw)

    store.record_create_attempt = swept_first
    run_flow(bot, username=NAME)
    assert not bot.mixpanel.create_calls()
    assert messages.CLOSED_BEFORE_CREATE in said_to_requester(bot)
    assert only_request_state(bot) is RequestState.FAILED
