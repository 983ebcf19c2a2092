"""Loopback fake of Mixpanel's app API (service accounts + ``/me``), validating requests against the spec.

Every create body is checked against ``ServiceAccountWrite`` of the published OpenAPI spec
(/work/shared/reference/mixpanel-service-accounts.openapi.yaml) plus the documented ``expires`` format;
violations answer 400 *and* land in ``.schema_violations`` so tests can assert the client never sent one.

Public API::

    FakeMixpanel(username="bot.abc123.mp-service-account", secret="mp-bot-secret",
                 organizations={1234: "Acme"}, projects=None, user_id=BOT_USER_ID)
        user_id: the authenticated service account's Mixpanel user id: /me's ``results.id``, and the
                 ``creator`` of every account created through the API
        organizations: {org_id: name} or {org_id: {"name": ..., "role": "admin"|"owner"|"analyst"|...}}
                       (create/delete/list need admin or owner, else 403)
        projects: [{"id", "name", "organization_id"}]; default: DEFAULT_PROJECTS (3 in org 1234, 1 in 9999)
        .start() -> FakeMixpanel / .stop() / context manager
        .base_url   "http://127.0.0.1:PORT/api/app"
        .redirect_slash = None | 301 | 307 | 308   answer slash-less paths with a redirect to "<path>/"

      routes (under /api/app, trailing slash optional)
        GET    /me[?include_workspace_users=false]                  route "me"      (results.id = user_id)
        POST   /organizations/{org}/service-accounts                route "create"  -> 201
        GET    /organizations/{org}/service-accounts                route "list"    (never tokens)
        GET    /organizations/{org}/service-accounts/{id}           route "get"
        DELETE /organizations/{org}/service-accounts/{id}           route "delete"  -> {"status":"ok"}
        POST   /organizations/{org}/service-accounts/add-to-project route "add_to_project"
               body {"service_account_ids": [int], "projects": [{"id": int, "role": ROLE}]}
        POST   /organizations/{org}/service-accounts/remove-from-project   route "remove_from_project"
               body {"projects": [{"id": int, "service_account_ids": [int]}]}   (a differently shaped body)
        GET    /projects/{project}/service-accounts                 route "project_list"
               ServiceAccountRead + "role" on that project, for the accounts that are members

      state
        .accounts: {id: record}  record = {id, username, requested_username, organization_id, role, projects,
                                           expires, created, creator, user, last_used}
        .tokens: {id: token} (live accounts)     .created_tokens() -> list[str] (every token ever issued)
        .deleted_accounts: {id: record}          .schema_violations: list[str]
        .internal_errors: list[str]   tracebacks of exceptions inside the fake (answered 500); keep empty
        .add_account(organization_id, username, *, role="consumer", expires=None, projects=(),
                     creator=HUMAN_ADMIN_ID, created=<now>) -> dict
            seeds an existing account (returns the record with its "token"); by default one an org admin
            made by hand; ``creator=fake.user_id`` for one the bot made; ``created`` an ISO time or None
        .membership(account_id) -> {project_id: role}     live project membership of an account
        .use_account(account_id, when=None)               sets last_used (ISO "YYYY-MM-DDTHH:MM:SSZ"; now)
        .delete_outside(account_id)                       deletes it as Mixpanel's UI would (no call recorded)

      recording
        .calls(method=None, path_contains=None) -> list[MixpanelCall]
            MixpanelCall(method, path, query, headers, json, at, route, body, status)
        .create_calls() / .delete_calls() / .list_calls() / .me_calls()
        .wait_for(predicate_or_route=None, timeout=10, count=1) -> list[MixpanelCall]
            (all matching; a str means a route name; AssertionError with a dump on timeout)
        .reset()   forget calls, accounts, violations and faults

      faults (per route: one of ROUTES; each scripted behaviour serves one request)
        .script(route, *behaviours)       queue; empty queue = normal behaviour
        .latency = {route: seconds}       every request of that route (concurrent requests are not serialised)
        .clear_faults()
        behaviours: respond(status, json_body, headers=None), respond_html(status, html), error_200(error),
                    rate_limited(retry_after="1"), hang(seconds), drop(),
                    create_then(status=500 | 201 | "drop", *, html=None, delay=0.0)
                    (201: the normal answer, only late: the account exists before its creator hears of it)

``MixpanelCall.at`` is ``time.monotonic()`` at arrival; ``status`` is filled once answered (None = dropped).
Hangs and latency sleep on an event that ``.stop()`` sets, so stopping never waits for them.
Order per request: record, redirect_slash, latency, scripted behaviour, Basic auth, org (404) and its role
(403), create validation. Create rules: JSON object with only username/role/expires/projects; username a
non-empty string; role optional (as in the spec) but one of ROLES; expires optional, exactly
YYYY-MM-DDTHH:MM:SSZ and a real date (null is a violation: omit it instead); projects[] items hold only
id (required int, a project of that org) and role (optional, one of ROLES). GET one answers
``{"status": "ok", "results": ServiceAccountRead}`` like the other routes. The membership bodies are checked
against AddServiceAccountsToProjectsRequest / RemoveServiceAccountsFromProjectsRequest (every key there is
required, no others allowed; ids must be accounts and projects of the organization), violations as above.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests import clock
from tests.fakes._server import LoopbackHandler, LoopbackHTTPFake, Reply

__all__ = [
    "BOT_USER_ID",
    "DEFAULT_PROJECTS",
    "HUMAN_ADMIN_ID",
    "ROLES",
    "FakeMixpanel",
    "Fault",
    "MixpanelCall",
    "create_then",
    "drop",
    "error_200",
    "hang",
    "rate_limited",
    "respond",
    "respond_html",
]

ROLES = ("owner", "admin", "analyst", "consumer")
EXPIRES_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ROUTES = ("me", "create", "list", "get", "delete", "add_to_project", "remove_from_project", "project_list")
_MEMBERSHIP_ROUTES = {"add-to-project": "add_to_project", "remove-from-project": "remove_from_project"}
DEFAULT_PROJECTS: list[dict[str, Any]] = [
    {"id": 3003, "name": "Web Analytics", "organization_id": 1234},
    {"id": 3001, "name": "android App", "organization_id": 1234},
    {"id": 3002, "name": "Backend Events", "organization_id": 1234},
    {"id": 4001, "name": "Other Org Project", "organization_id": 9999},
]
BOT_USER_ID = 4242  # the bot's own Mixpanel user (its service account)
HUMAN_ADMIN_ID = 1001  # an organization admin who makes accounts by hand
_NOW = object()
_WRITE_KEYS = frozenset({"username", "role", "expires", "projects"})
_PROJECT_KEYS = frozenset({"id", "role"})


# ---------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Fault:
    """One scripted answer; build with the module-level factories below."""

    kind: str  # respond | html | hang | drop | create_then
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    then_drop: bool = False


def respond(status: int, json_body: Any, headers: Mapping[str, str] | None = None) -> Fault:
    """Answer with this status and JSON body, doing nothing else."""
    return Fault("respond", status, json_body, dict(headers or {}))


def respond_html(status: int, html: str) -> Fault:
    """Answer as a proxy would (e.g. 502/504 HTML), doing nothing else."""
    return Fault("html", status, html)


def error_200(error: str | Mapping[str, Any]) -> Fault:
    """HTTP 200 carrying ``{"status": "error", "error": error}`` (Mixpanel does this)."""
    err = error if isinstance(error, str) else dict(error)
    return Fault("respond", 200, {"status": "error", "error": err})


def rate_limited(retry_after: str | int | None = "1") -> Fault:
    """429 with ``Retry-After`` (omitted when None) and a JSON error; nothing is processed."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Fault("respond", 429, {"status": "error", "error": "Rate limit exceeded"}, headers)


def hang(seconds: float) -> Fault:
    """Wait ``seconds`` (or until ``.stop()``) and then behave normally: drives client timeouts."""
    return Fault("hang", seconds=seconds)


def drop() -> Fault:
    """Read the request, then close the connection without any response."""
    return Fault("drop")


def create_then(status: int | str = 500, *, html: str | None = None, delay: float = 0.0) -> Fault:
    """Really create the account, then (after ``delay``) answer ``status`` as HTML, drop ("drop"), or give
    the normal answer (201)."""
    if status == "drop":
        return Fault("create_then", then_drop=True, seconds=delay)
    if not isinstance(status, int):
        raise ValueError("create_then status must be an int or 'drop'")
    page = html if html is not None else f"<html><body><h1>{status} Server Error</h1></body></html>"
    return Fault("create_then", status, page, seconds=delay)


# ---------------------------------------------------------------------- recording


@dataclass
class MixpanelCall:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float
    route: str | None = None
    body: str = ""
    status: int | None = None


def _json_reply(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def _error(status: int, message: str) -> Reply:
    return _json_reply(status, {"status": "error", "error": message})


def _now_iso() -> str:
    return clock.iso_z(clock.now())


class _Handler(LoopbackHandler):
    """Also DELETE; PUT and PATCH reach ``_dispatch`` too, so they get the fake's JSON 404, not a 501."""

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()


# ---------------------------------------------------------------------- the fake


class FakeMixpanel(LoopbackHTTPFake[MixpanelCall]):
    """In-process Mixpanel app API; thread-safe, one thread per request."""

    _handler = _Handler

    def __init__(
        self,
        username: str = "bot.abc123.mp-service-account",
        secret: str = "mp-bot-secret",  # noqa: S107 - a fake's fixture secret
        organizations: Mapping[int, str | Mapping[str, Any]] | None = None,
        projects: Iterable[Mapping[str, Any]] | None = None,
        user_id: int = BOT_USER_ID,
    ) -> None:
        super().__init__()
        self.username = username
        self.user_id = user_id
        self.secret = secret
        orgs = {1234: "Acme"} if organizations is None else organizations
        self.organizations: dict[int, dict[str, Any]] = {}
        for org_id, spec in orgs.items():
            info = {"name": spec} if isinstance(spec, str) else dict(spec)
            self.organizations[int(org_id)] = {
                "id": int(org_id),
                "name": info.get("name", f"Org {org_id}"),
                "role": info.get("role", "admin"),
            }
        source = DEFAULT_PROJECTS if projects is None else projects
        self.projects: dict[int, dict[str, Any]] = {int(p["id"]): dict(p) for p in source}
        self.latency: dict[str, float] = {}
        self.redirect_slash: int | None = None

        self.accounts: dict[int, dict[str, Any]] = {}
        self.tokens: dict[int, str] = {}
        self.deleted_accounts: dict[int, dict[str, Any]] = {}
        self.schema_violations: list[str] = []
        self._issued_tokens: list[str] = []
        self._scripts: dict[str, deque[Fault]] = {}
        self._ids = itertools.count(7001)

    # ------------------------------------------------------------------ address (start/stop: LoopbackFake)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/app"

    # ------------------------------------------------------------------ seeding and state

    def add_account(
        self,
        organization_id: int,
        username: str,
        *,
        role: str = "consumer",
        expires: str | None = None,
        projects: Iterable[Mapping[str, Any]] = (),
        creator: int = HUMAN_ADMIN_ID,
        created: Any = _NOW,
    ) -> dict[str, Any]:
        """Seed an account that already exists (by default made by hand by an org admin); returns it with
        its token. ``created``: an ISO time, or None for an account Mixpanel gives no creation time."""
        with self._lock:
            record, token = self._create_account(
                organization_id,
                {"username": username, "role": role, "expires": expires, "projects": projects},
                creator=creator,
            )
            if created is not _NOW:
                record["created"] = created
        return {**record, "token": token}

    def membership(self, account_id: int) -> dict[int, str]:
        with self._lock:
            record = self.accounts.get(account_id) or self.deleted_accounts.get(account_id) or {}
            return {int(p["id"]): p.get("role") or record.get("role") for p in record.get("projects", ())}

    def use_account(self, account_id: int, when: str | None = None) -> None:
        with self._lock:
            self.accounts[account_id]["last_used"] = when or _now_iso()

    def delete_outside(self, account_id: int) -> None:
        """Delete an account as someone in Mixpanel's UI would: the bot is not told."""
        with self._lock:
            self.deleted_accounts[account_id] = self.accounts.pop(account_id)
            self.tokens.pop(account_id, None)

    def created_tokens(self) -> list[str]:
        """Every token this fake ever issued, including deleted accounts'."""
        with self._lock:
            return list(self._issued_tokens)

    def reset(self) -> None:
        """Forget calls, accounts, violations and faults (configuration stays)."""
        with self._lock:
            self._calls.clear()
            self.accounts.clear()
            self.tokens.clear()
            self.deleted_accounts.clear()
            self.schema_violations.clear()
            self.internal_errors.clear()
            self._issued_tokens.clear()
            self.clear_faults()

    # ------------------------------------------------------------------ faults

    def script(self, route: str, *behaviours: Fault) -> None:
        """Queue behaviours for ``route``; each answers one request, then normal service resumes."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {ROUTES}")
        with self._lock:
            self._scripts.setdefault(route, deque()).extend(behaviours)

    def clear_faults(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.latency = {}

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None, path_contains: str | None = None) -> list[MixpanelCall]:
        """Recorded requests in arrival order, optionally filtered by HTTP method and path."""
        return self._calls_where(
            lambda c: (
                (method is None or c.method == method.upper())
                and (path_contains is None or path_contains in c.path)
            )
        )

    def _route_calls(self, route: str) -> list[MixpanelCall]:
        return self._calls_where(lambda c: c.route == route)

    def create_calls(self) -> list[MixpanelCall]:
        return self._route_calls("create")

    def delete_calls(self) -> list[MixpanelCall]:
        return self._route_calls("delete")

    def list_calls(self) -> list[MixpanelCall]:
        return self._route_calls("list")

    def me_calls(self) -> list[MixpanelCall]:
        return self._route_calls("me")

    def wait_for(
        self,
        predicate_or_route: Callable[[MixpanelCall], bool] | str | None = None,
        timeout: float = 10,
        count: int = 1,
    ) -> list[MixpanelCall]:
        """Block until ``count`` matching requests exist; return all matching requests."""
        return self._wait_for_calls(predicate_or_route, "route", timeout, count)

    def _timeout_report(self) -> str:
        dump = "\n".join(
            f"  {c.method} {c.path} ({c.route}) -> {c.status} json={json.dumps(c.json, default=str)[:250]}"
            for c in self.calls()
        )
        return f"Recorded requests:\n{dump or '  (none)'}\nschema_violations={self.schema_violations}"

    # ------------------------------------------------------------------ dispatch

    @staticmethod
    def _route(verb: str, path: str) -> tuple[str | None, list[str]]:
        """Map (verb, path below /api/app) to a route name and its path parameters."""
        segments = [s for s in path.split("/") if s]
        if segments == ["me"]:
            return ("me" if verb == "GET" else None), []
        if segments[:1] == ["projects"] and len(segments) == 3 and segments[2] == "service-accounts":
            return ("project_list" if verb == "GET" else None), segments[1:2]
        if len(segments) in (3, 4) and segments[0] == "organizations" and segments[2] == "service-accounts":
            if len(segments) == 4 and segments[3] in _MEMBERSHIP_ROUTES:
                return (_MEMBERSHIP_ROUTES[segments[3]] if verb == "POST" else None), segments[1:2]
            if len(segments) == 3:
                return {"GET": "list", "POST": "create"}.get(verb), segments[1:2]
            return {"GET": "get", "DELETE": "delete"}.get(verb), [segments[1], segments[3]]
        return None, []

    def _dispatch(self, verb: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        parts = urlsplit(raw_path)
        text = body.decode("utf-8", "replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = None
        prefix = "/api/app"
        inner = parts.path[len(prefix) :] if parts.path.startswith(prefix) else None
        route, params = self._route(verb, inner) if inner is not None else (None, [])
        call = MixpanelCall(
            method=verb,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            json=parsed,
            at=time.monotonic(),
            route=route,
            body=text,
        )
        self._record(call)
        reply = self._serve(call, route, params, headers, body)
        with self._changed:
            call.status = None if reply is None else reply.status
            self._changed.notify_all()
        return reply

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; False means the fake is stopping and the request should be dropped."""
        return not (seconds > 0 and self._stopping.wait(seconds)) and not self._stopping.is_set()

    def _serve(
        self,
        call: MixpanelCall,
        route: str | None,
        params: list[str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply | None:
        if route is None:
            return _error(404, f"Not found: {call.method} {call.path}")
        if self.redirect_slash and not call.path.endswith("/"):
            location = call.path + "/" + (f"?{urlencode(call.query)}" if call.query else "")
            return Reply(self.redirect_slash, b"", "text/html", {"Location": location})
        if not self._sleep(self.latency.get(route, 0.0)):
            return None
        with self._lock:
            queue = self._scripts.get(route)
            fault = queue.popleft() if queue else None
        if fault is not None:
            if fault.kind == "respond":
                return _json_reply(fault.status, fault.body, fault.headers)
            if fault.kind == "html":
                return Reply(fault.status, str(fault.body).encode(), "text/html; charset=utf-8")
            if fault.kind == "drop":
                return None
            if fault.kind == "hang" and not self._sleep(fault.seconds):
                return None
        reply = self._normal(route, params, headers, body, call)
        if fault is not None and fault.kind == "create_then" and reply.status == 201:
            if not self._sleep(fault.seconds) or fault.then_drop:
                return None
            if fault.status == 201:
                return reply
            return Reply(fault.status, str(fault.body).encode(), "text/html; charset=utf-8")
        return reply

    def _authorized(self, headers: Mapping[str, str]) -> bool:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(auth[len("Basic ") :], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return secrets.compare_digest(user, self.username) and secrets.compare_digest(password, self.secret)

    def _normal(
        self, route: str, params: list[str], headers: Mapping[str, str], body: bytes, call: MixpanelCall
    ) -> Reply:
        if not self._authorized(headers):
            return _error(401, "Authentication failed: invalid service account username or secret")
        if route == "me":
            return self._me()
        if route == "project_list":
            return self._project_list(params[0])
        try:
            org_id = int(params[0])
        except ValueError:
            return _error(404, f"Organization {params[0]!r} not found")
        org = self.organizations.get(org_id)
        if org is None:
            return _error(404, f"Organization {org_id} not found")
        if org["role"] not in ("admin", "owner"):
            return _error(403, "User does not have permissions to manage service accounts")
        with self._lock:
            if route == "list":
                results = [self._read(a) for a in self.accounts.values() if a["organization_id"] == org_id]
                return _json_reply(200, {"status": "ok", "results": results})
            if route == "create":
                return self._create(org_id, headers, body)
            if route in ("add_to_project", "remove_from_project"):
                return self._change_membership(route, org_id, headers, body)
            try:
                account_id = int(params[1])
            except ValueError:
                return _error(404, "Service account not found")
            account = self.accounts.get(account_id)
            if account is None or account["organization_id"] != org_id:
                return _error(404, "Service account not found")
            if route == "get":
                return _json_reply(200, {"status": "ok", "results": self._read(account)})
            self.deleted_accounts[account_id] = self.accounts.pop(account_id)
            self.tokens.pop(account_id, None)
            return _json_reply(200, {"status": "ok"})

    def _me(self) -> Reply:
        orgs = {str(i): dict(o) for i, o in self.organizations.items()}
        projects = {
            str(pid): {
                "name": p["name"],
                "organization_id": p["organization_id"],
                "timezone": p.get("timezone", "US/Pacific"),
                "domain": p.get("domain", "mixpanel.com"),
                "role": "admin",
                "is_demo": False,
                "cluster_id": 1,
            }
            for pid, p in self.projects.items()
        }
        return _json_reply(
            200,
            {
                "status": "ok",
                "results": {
                    "id": self.user_id,
                    "user_name": self.username,
                    "organizations": orgs,
                    "projects": projects,
                },
            },
        )

    # ------------------------------------------------------------------ project membership

    def _project_list(self, raw_project_id: str) -> Reply:
        try:
            project = self.projects.get(int(raw_project_id))
        except ValueError:
            project = None
        if project is None:
            return _error(404, f"Project {raw_project_id!r} not found")
        org = self.organizations.get(int(project["organization_id"]))
        if org is None or org["role"] not in ("admin", "owner"):
            return _error(403, "User does not have permissions to list this project's service accounts")
        with self._lock:
            results = []
            for record in self.accounts.values():
                for grant in record["projects"]:
                    if int(grant["id"]) == int(project["id"]):
                        role = grant.get("role") or record.get("role")
                        results.append({**self._read(record), "role": role, "target_type": "individual"})
        return _json_reply(200, {"status": "ok", "results": results})

    def _membership_body(self, route: str, org_id: int, headers: Mapping[str, str], body: bytes) -> Any:
        """The validated body of add-to-project / remove-from-project, or what is wrong with it."""
        ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return f"Content-Type must be application/json, got {ctype or 'nothing'!r}"
        try:
            data = json.loads(body)
        except ValueError:
            return "body is not valid JSON"
        expected = {"projects", "service_account_ids"} if route == "add_to_project" else {"projects"}
        if not isinstance(data, dict) or set(data) != expected:
            return f"{route} body must hold exactly {sorted(expected)}, got {data!r}"
        item_keys = {"id", "role"} if route == "add_to_project" else {"id", "service_account_ids"}
        if not isinstance(data["projects"], list) or not data["projects"]:
            return "projects must be a non-empty array"
        account_lists = [data.get("service_account_ids")]
        for i, item in enumerate(data["projects"]):
            if not isinstance(item, dict) or set(item) != item_keys:
                return f"projects[{i}] must hold exactly {sorted(item_keys)}, got {item!r}"
            project = self.projects.get(item["id"]) if isinstance(item["id"], int) else None
            if project is None or project["organization_id"] != org_id:
                return f"projects[{i}].id {item['id']!r} is not a project of organization {org_id}"
            if "role" in item and item["role"] not in ROLES:
                return f"projects[{i}].role must be one of {', '.join(ROLES)}"
            account_lists.append(item.get("service_account_ids"))
        for ids in account_lists:
            if ids is None:
                continue
            if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
                return "service_account_ids must be a non-empty array of integers"
        return data

    def _change_membership(self, route: str, org_id: int, headers: Mapping[str, str], body: bytes) -> Reply:
        data = self._membership_body(route, org_id, headers, body)
        if isinstance(data, str):
            return self._violation(data)
        if route == "add_to_project":
            changes = [(i, p["id"], p["role"]) for i in data["service_account_ids"] for p in data["projects"]]
        else:
            changes = [(i, p["id"], None) for p in data["projects"] for i in p["service_account_ids"]]
        for account_id, _, _ in changes:
            account = self.accounts.get(account_id)
            if account is None or account["organization_id"] != org_id:
                return _error(404, f"Service account {account_id} not found")
        for account_id, project_id, role in changes:
            grants = [g for g in self.accounts[account_id]["projects"] if int(g["id"]) != project_id]
            if role is not None:
                grants.append({"id": project_id, "role": role})
            self.accounts[account_id]["projects"] = grants
        return _json_reply(200, {"status": "ok"})

    # ------------------------------------------------------------------ create

    def _violation(self, message: str) -> Reply:
        self.schema_violations.append(message)
        return _error(400, message)

    def _validate_write(self, org_id: int, headers: Mapping[str, str], body: bytes) -> str | dict[str, Any]:
        """Return the validated body, or the reason it breaks ``ServiceAccountWrite``."""
        ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return f"Content-Type must be application/json, got {ctype or 'nothing'!r}"
        try:
            data = json.loads(body)
        except ValueError:
            return "body is not valid JSON"
        if not isinstance(data, dict):
            return "body must be a JSON object"
        unknown = sorted(set(data) - _WRITE_KEYS)
        if unknown:
            return f"unknown field(s): {', '.join(unknown)}"
        username = data.get("username")
        if not isinstance(username, str) or not username.strip():
            return "username is required and must be a non-empty string"
        if "role" in data and data["role"] not in ROLES:
            return f"role must be one of {', '.join(ROLES)}, got {data['role']!r}"
        if "expires" in data:
            problem = self._check_expires(data["expires"])
            if problem:
                return problem
        if "projects" in data:
            problem = self._check_projects(org_id, data["projects"])
            if problem:
                return problem
        return data

    @staticmethod
    def _check_expires(expires: Any) -> str | None:
        if not isinstance(expires, str) or not EXPIRES_RE.match(expires):
            return f"expires must look like YYYY-MM-DDTHH:MM:SSZ, got {expires!r}"
        try:
            datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            return f"expires is not a real date/time: {expires!r}"
        return None

    def _check_projects(self, org_id: int, projects: Any) -> str | None:
        if not isinstance(projects, list):
            return "projects must be an array"
        for i, item in enumerate(projects):
            if not isinstance(item, dict):
                return f"projects[{i}] must be an object"
            unknown = sorted(set(item) - _PROJECT_KEYS)
            if unknown:
                return f"projects[{i}] has unknown field(s): {', '.join(unknown)}"
            pid = item.get("id")
            if not isinstance(pid, int) or isinstance(pid, bool):
                return f"projects[{i}].id must be an integer, got {pid!r}"
            project = self.projects.get(pid)
            if project is None or project["organization_id"] != org_id:
                return f"projects[{i}].id {pid} is not a project of organization {org_id}"
            if "role" in item and item["role"] not in ROLES:
                return f"projects[{i}].role must be one of {', '.join(ROLES)}, got {item['role']!r}"
        return None

    def _create(self, org_id: int, headers: Mapping[str, str], body: bytes) -> Reply:
        data = self._validate_write(org_id, headers, body)
        if isinstance(data, str):
            return self._violation(data)
        record, token = self._create_account(org_id, data, creator=self.user_id)
        return _json_reply(201, {"status": "ok", "results": {**self._read(record), "token": token}})

    def _create_account(
        self, org_id: int, data: Mapping[str, Any], *, creator: int
    ) -> tuple[dict[str, Any], str]:
        account_id = next(self._ids)
        token = secrets.token_hex(16)
        record = {
            "id": account_id,
            "username": f"{data['username']}.{secrets.token_hex(3)}.mp-service-account",
            "requested_username": data["username"],
            "organization_id": org_id,
            "role": data.get("role"),
            "projects": [dict(p) for p in data.get("projects") or ()],
            "expires": data.get("expires"),
            "created": _now_iso(),
            "creator": creator,
            "last_used": None,
            "user": 100000 + account_id,
        }
        self.accounts[account_id] = record
        self.tokens[account_id] = token
        self._issued_tokens.append(token)
        return record, token

    @staticmethod
    def _read(record: Mapping[str, Any]) -> dict[str, Any]:
        """``ServiceAccountRead``: what list/get/create return (never the token)."""
        keys = ("id", "username", "last_used", "expires", "creator", "created", "user")
        return {k: record[k] for k in keys}
