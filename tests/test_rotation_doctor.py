"""`python -m bot doctor` reports stuck rotations: a failed one, and one no run has moved for a day."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.doctor.report import Status
from bot.doctor.rotation_checks import STUCK_AFTER, check_rotations
from bot.rotate.states import RotationState
from tests.doctor_harness import healthy_deployment, statuses
from tests.fakes.mixpanel import respond
from tests.fakes.vault import FakeVault
from tests.rotation_harness import due, mint, rotating_bot, rotation_of, run


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


@pytest.mark.subprocess
def test_doctor_names_a_failed_rotation_and_why(bots, vault, slack, mixpanel, tmp_path):
    deployment = healthy_deployment(slack, mixpanel, tmp_path)
    assert statuses(deployment.run().stdout)["rotations"][0] == "PASS"
    bot, clock = rotating_bot(bots, vault, slack)  # the same database file as the deployment's
    old = mint(bot)
    mixpanel.script("create", respond(400, {"status": "error", "error": "role not allowed"}))
    due(old, clock)
    assert run(bot) == [RotationState.FAILED]

    status, line = statuses(deployment.run().stdout)["rotations"]

    assert status == "WARN"
    assert old.mixpanel_username in line and "role not allowed" in line and "Rotate now" in line


def test_a_rotation_no_run_has_moved_for_a_day_is_stuck(bots, vault, slack, tmp_path):
    bot, clock = rotating_bot(bots, vault, slack)
    old = mint(bot)
    due(old, clock)
    database = f"sqlite:///{tmp_path / 'bot.db'}"
    bot.runtime.rotation.rotations.open(old.id, due_at=clock(), now=clock())  # opened; then no run came
    assert rotation_of(bot, old).state is RotationState.DUE

    assert check_rotations(database, now=clock() + STUCK_AFTER - timedelta(minutes=1)).status is Status.PASS
    late = check_rotations(database, now=clock() + STUCK_AFTER + timedelta(minutes=1))
    assert late.status is Status.WARN and "due since" in late.found
