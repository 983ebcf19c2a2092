"""Correctness of one server's run: each person got exactly their own token, and it went nowhere else."""

from __future__ import annotations

import json
import re
from typing import Any

from bench.config import BASELINE, TOKEN_RE
from bench.fakes import BenchVault
from bench.results import ServerResult
from bench.watcher import SlackWatcher
from tests.fakes.mixpanel import FakeMixpanel
from tests.fakes.slack_api import FakeSlack


def check(
    result: ServerResult,
    watcher: SlackWatcher,
    slack: FakeSlack,
    mixpanel: FakeMixpanel,
    vault: BenchVault | None = None,
) -> None:
    """Fill ``result.problems`` (correctness failures), ``notes`` and ``counts`` from what the fakes saw.
    With `vault`, each token must be in its own secret there, and in no Slack call at all."""
    strict = result.kind is not BASELINE  # the baseline may time out; it may never mix tokens up
    problems, notes = result.problems, result.notes
    issued = set(mixpanel.created_tokens())
    accounts: dict[str, list[dict[str, Any]]] = {}
    for record in [*mixpanel.accounts.values(), *mixpanel.deleted_accounts.values()]:
        accounts.setdefault(record["requested_username"], []).append(record)
    own_tokens_ok = wrong_token = undelivered = 0
    for flow in result.flows:
        found = set()
        if vault is not None:
            found.add(vault.token_for(flow.username))
        for post in watcher.posts_to(flow.response_url) if vault is None else ():
            found.update(TOKEN_RE.findall(json.dumps(post.args)))
        found &= issued
        records = accounts.get(flow.username, [])
        own = {mixpanel.tokens.get(r["id"]) for r in records} - {None}
        if len(records) > 1:
            problems.append(f"{flow.username}: {len(records)} Mixpanel accounts for one submission")
        if found - own:
            wrong_token += 1
            problems.append(f"{flow.username} ({flow.user_id}) received a token that is not theirs")
        elif records and own and found == own:
            own_tokens_ok += 1
        elif records:
            undelivered += 1
            (problems if strict else notes).append(f"{flow.username}: account created, token not delivered")
        if flow.error and strict:
            problems.append(f"{flow.user_id} {flow.username}: {flow.error.splitlines()[0]}")
    failed_flows = [f for f in result.flows if f.error]
    if failed_flows and not strict:
        kinds: dict[str, int] = {}
        for f in failed_flows:
            key = re.sub(r"after [\d.]+s|\d+s", "…", f.error.splitlines()[0]) if f.error else "?"
            kinds[key] = kinds.get(key, 0) + 1
        notes.extend(f"{n} flow(s) failed: {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))

    # Each token is in exactly one Slack call, the message to its requester; with a destination, in none.
    seen: dict[str, list[str]] = {}
    for call in slack.calls():
        for token in set(TOKEN_RE.findall(json.dumps(call.args, default=str))) & issued:
            seen.setdefault(token, []).append(call.method)
    leaked = [t for t, methods in seen.items() if vault is not None or methods != ["response_url"]]
    if leaked:
        problems.append(f"{len(leaked)} token(s) appear in more than the one message to their requester")

    creates = mixpanel.create_calls()
    submitted = sum(1 for f in result.flows if f.submitted)
    if len(creates) > submitted:
        problems.append(f"{len(creates)} Mixpanel creates for {submitted} submissions")
    elif len(creates) < submitted:
        (problems if strict else notes).append(
            f"only {len(creates)} Mixpanel creates for {submitted} submissions"
        )
    bad_status = [c.status for c in creates if c.status != 201]
    if bad_status:
        (problems if strict else notes).append(
            f"{len(bad_status)} creates did not answer 201: {bad_status[:5]}"
        )
    for name, items in (
        ("fake Mixpanel schema violations", mixpanel.schema_violations),
        ("fake Mixpanel internal errors", mixpanel.internal_errors),
        ("fake Slack internal errors", slack.internal_errors),
        ("fake Slack view validation errors", slack.view_errors),
    ):
        if items:
            problems.append(f"{len(items)} {name}: {str(items[0])[:300]}")
    if strict and result.exit_code not in (0, None):
        notes.append(f"the app exited with {result.exit_code} on SIGTERM (log: {result.log_path})")
    result.counts = {
        "flows": len(result.flows),
        "submitted": submitted,
        "creates": len(creates),
        "tokens_issued": len(issued),
        "own_token_delivered": own_tokens_ok,
        "wrong_token": wrong_token,
        "undelivered": undelivered,
        "leaked": len(leaked),
        "failed_flows": len(failed_flows),
    }
