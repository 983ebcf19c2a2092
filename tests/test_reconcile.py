"""Which listed account is a request's own: the pure decision, by tables and Hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.create.reconcile import attribute, create_window, is_ours, name_matches
from bot.db.schema import RequestState, StoredRequest
from bot.mixpanel.models import ServiceAccountRead
from bot.models import Role

BOT = 4242
HUMAN = 1001
SKEW = timedelta(minutes=5)
STORED = datetime(2027, 3, 1, 12, 0, 0, tzinfo=UTC)
CALLED = STORED + timedelta(seconds=40)  # the last create call, after a retried 429


def request(
    *,
    request_id: str = "r1",
    username: str = "etl",
    called: datetime | None = CALLED,
    stored: datetime = STORED,
) -> StoredRequest:
    return StoredRequest(
        id=request_id,
        requester_id="U1",
        team_id="T1",
        channel_id="C1",
        username=username,
        role=Role.ANALYST,
        project_ids=(3001,),
        expires_at=None,
        state=RequestState.UNCERTAIN,
        mixpanel_account_id=None,
        mixpanel_username=None,
        created_at=stored,
        last_create_attempt_at=called,
    )


def account(
    *,
    account_id: int = 7001,
    username: str = "etl.a1b2c3.mp-service-account",
    creator: int | None = BOT,
    at=CALLED,
) -> ServiceAccountRead:
    created = at.strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(at, datetime) else at
    return ServiceAccountRead(id=account_id, username=username, creator=creator, created=created)


@pytest.mark.parametrize(
    ("listed", "known", "ours"),
    [
        pytest.param(account(), set(), True, id="the-bot-made-it-in-the-window"),
        pytest.param(account(username="etl"), set(), True, id="bare-name"),
        pytest.param(account(creator=HUMAN), set(), False, id="an-admin-made-it-by-hand"),
        pytest.param(account(creator=None), set(), False, id="no-creator"),
        pytest.param(account(username="etl-2.a1b2c3.mp-service-account"), set(), False, id="another-name"),
        pytest.param(
            account(username="xetl.a1b2c3.mp-service-account"), set(), False, id="name-inside-another"
        ),
        pytest.param(account(at=None), set(), False, id="no-created-time"),
        pytest.param(account(at="yesterday-ish"), set(), False, id="unreadable-created-time"),
        pytest.param(account(at=STORED - SKEW), set(), True, id="at-the-start-of-the-skew"),
        pytest.param(account(at=STORED - SKEW - timedelta(seconds=1)), set(), False, id="before-the-window"),
        pytest.param(account(at=CALLED + SKEW), set(), True, id="at-the-end-of-the-skew"),
        pytest.param(account(at=CALLED + SKEW + timedelta(seconds=1)), set(), False, id="after-the-window"),
        pytest.param(account(at=CALLED + timedelta(hours=3)), set(), False, id="hours-later"),
        pytest.param(account(), {7001}, False, id="another-request-knows-it"),
    ],
)
def test_is_ours(listed, known, ours):
    assert is_ours(listed, request(), BOT, known, SKEW) is ours


def test_nothing_is_ours_without_the_bots_own_user_id_or_a_create_call():
    assert not is_ours(account(), request(), None, set(), SKEW)
    assert create_window(request(called=None), SKEW) is None
    assert not is_ours(account(), request(called=None), BOT, set(), SKEW)


def test_an_account_another_create_in_flight_may_yet_claim_is_contested_not_ours():
    mine = request(request_id="mine")
    theirs = request(
        request_id="theirs", stored=STORED + SKEW, called=STORED + SKEW + timedelta(seconds=1)
    )  # their window opens at STORED
    early = account(account_id=1, at=STORED - timedelta(minutes=1))  # before their window: only mine
    late = account(account_id=2, at=STORED + timedelta(minutes=2))
    found = attribute(
        [early, late], mine, bot_user_id=BOT, known_ids=set(), creates_in_flight=[theirs], skew=SKEW
    )
    assert [a.id for a in found.ours] == [1] and [a.id for a in found.contested] == [2]
    alone = attribute([early, late], mine, bot_user_id=BOT, known_ids=set(), creates_in_flight=[], skew=SKEW)
    assert [a.id for a in alone.ours] == [1, 2] and alone.contested == []


moments = st.datetimes(
    min_value=datetime(2027, 2, 1), max_value=datetime(2027, 4, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))


@given(
    stored=moments,
    call_after=st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=10)),
    created=moments,
    creator=st.sampled_from([BOT, HUMAN, None]),
    known=st.booleans(),
    suffix=st.sampled_from([".a1b2c3.mp-service-account", "", "-x", ".a1b2c3.mp-service-account.x"]),
)
def test_an_account_is_ours_exactly_when_every_check_agrees(
    stored, call_after, created, creator, known, suffix
):
    req = request(stored=stored, called=stored + call_after)
    listed = account(username="etl" + suffix, creator=creator, at=created)
    in_window = stored - SKEW <= created <= stored + call_after + SKEW
    expected = creator == BOT and suffix in (".a1b2c3.mp-service-account", "") and in_window and not known
    assert is_ours(listed, req, BOT, {7001} if known else set(), SKEW) is expected


@given(st.text(alphabet="abc.-_19", min_size=1, max_size=12), st.text(alphabet="abc.-_19", max_size=30))
def test_a_name_matches_only_itself_with_or_without_mixpanels_suffix(requested, listed):
    matches = name_matches(requested, listed)
    if matches:
        assert listed == requested or (
            listed.startswith(requested + ".") and listed.endswith(".mp-service-account")
        )
    assert name_matches(requested, requested + ".0f0f0f.mp-service-account")
