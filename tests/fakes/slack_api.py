"""Loopback fake of the Slack Web API and of ``response_url`` endpoints, for tests.

Real HTTP on 127.0.0.1 so the app's real ``slack_sdk.WebClient`` (and Bolt's ``respond``) run unchanged:
point ``WebClient(base_url=fake.base_url)`` at it.

Public API::

    FakeSlack(bot_token="xoxb-test-token", users=None)   # users: iterable of ids or {id: add_user kwargs}
        .start() -> FakeSlack / .stop() / context manager (start on enter, stop on exit)
        .base_url            "http://127.0.0.1:PORT/api/"    (WebClient appends e.g. "views.open")
        .url                 "http://127.0.0.1:PORT/"
        .bot_token, .app_token (None: any "xapp-..." bearer is accepted by apps.connections.open)
        .granted_scopes      the bot token's scopes (default: bot.slack.scopes.REQUIRED_BOT_SCOPES); sent in
                             the ``x-oauth-scopes`` header of every answer to the bot token, as Slack does,
                             and enforced: a method needing a scope not granted answers ``missing_scope``
        .socket_mode_url     returned by apps.connections.open
        .team_id="T1", .enterprise_id=None, .bot_user_id="UBOT", .bot_id="BBOT", .app_id="A1"
                             (auth.test reports team_id, and enterprise_id when set)
        .validate_views=True (views.* run the view through slack_sdk's View model; errors -> invalid_arguments
                              and are appended to .view_errors)
        .response_url_max_uses=5 (Slack allows 5 posts per response_url; later posts get 404 "used_url")
        .internal_errors     tracebacks of exceptions inside the fake (such requests get HTTP 500); keep empty

      recording
        .calls(method=None) -> list[SlackCall]   SlackCall(method, args, headers, at, status, response)
        .wait_for(method_or_predicate=None, timeout=10, count=1) -> list[SlackCall]
                                                  (all matching calls; AssertionError + dump on timeout)
        .reset()                                  forget calls, views, faults and trigger ids (keeps users)
        .all_recorded_text() -> str               JSON dump of every call's args (for secret-leak checks)
        .opened_by(trigger_id) -> SlackCall       the answered views.open a request's trigger led to
        .views / .view(view_id) / .latest_view(callback_id=None)   server-side view state (with id, hash)
        .response_url_posts(url=None) -> list[SlackCall]

      registry
        .add_user(user_id, *, tz="America/New_York", tz_offset=None, is_restricted=False,
                  is_ultra_restricted=False, is_bot=False, deleted=False, is_app_user=False, name=None,
                  team_id=None, enterprise_id=None, is_stranger=None, **extra) -> dict
                                     team_id: the user's home team (default .team_id); enterprise_id adds
                                     ``enterprise_user``; is_stranger (Slack Connect) is sent only when given
        .set_usergroup(group_id, user_ids)
        .add_channel(channel_id, *, name=None, is_private=False, is_member=True, is_archived=False) -> dict
            for conversations.info (a private channel without the bot is ``channel_not_found``, as in Slack)
        .remove_user(user_id)        the user left the workspace: users.info answers user_not_found
        .issue_trigger_id() -> str   optional: such ids work once and expire after .trigger_ttl (3 s);
                                     ids never issued are accepted (SlackSender makes its own)

      faults
        .fail(method, error="user_not_in_channel", times=None, when=None)   {"ok": false, "error": error}
        .set_http_status(method, status, times=None, body=None, retry_after="1")   (429 -> Retry-After)
        .delay(method, seconds)              (interrupted by .stop())
        .fail_response_urls(status=404, body="no_service", times=None, retry_after="1")   (429 -> Retry-After)
        .clear_faults()

      response_url
        .new_response_url(label=None) -> str   "http://127.0.0.1:PORT/response/<random>"
        POSTs are recorded as SlackCall(method="response_url", args={**json_body, "_url": url[, "_label"]})

``SlackCall.at`` is ``time.monotonic()`` at arrival; ``status``/``response`` are filled once answered;
``headers`` is case-insensitive. Order per request: record, delay, HTTP fault, auth, ``fail`` fault, method.
Methods: auth.test, views.open, views.update (a stale ``hash`` -> ``hash_conflict``), views.push,
views.publish, chat.postEphemeral, chat.postMessage, chat.update, conversations.open, conversations.info,
users.info, usergroups.users.list, apps.connections.open. Anything else answers ``unknown_method``.
HTTP faults answer 429 as JSON ``ratelimited`` + ``Retry-After``, other statuses as an HTML page.

How slack_sdk 3.48 talks to it: every call is a POST (even ``http_verb="GET"`` ones); the token is in
``Authorization: Bearer``; views.*, chat.postMessage and chat.postEphemeral send a JSON body; users.info,
usergroups.users.list, conversations.open, auth.test and apps.connections.open send a form body.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from bot.slack.scopes import REQUIRED_BOT_SCOPES
from tests.fakes._server import LoopbackHTTPFake, Reply

__all__ = ["FakeSlack", "SlackCall"]

ArgsPredicate = Callable[[dict[str, Any]], bool]

# The bot-token scope each method needs, as Slack's method pages list them (conversations.info: see there).
METHOD_SCOPES: dict[str, str] = {
    "chat.postEphemeral": "chat:write",
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "conversations.open": "im:write",
    "users.info": "users:read",
    "usergroups.users.list": "usergroups:read",
}
APP_TOKEN_SCOPES = "connections:write"


@dataclass
class SlackCall:
    """One request the fake received; ``args`` merges query string, form and JSON body."""

    method: str
    args: dict[str, Any]
    headers: Mapping[str, str]
    at: float
    status: int | None = None
    response: Any = None


@dataclass
class _ErrorFault:
    error: str
    remaining: int | None
    when: ArgsPredicate | None


@dataclass
class _HttpFault:
    status: int
    remaining: int | None
    body: str | None
    retry_after: str | None


@dataclass
class _ResponseUrl:
    url: str
    label: str | None
    uses: int = 0


def _maybe_json(value: Any) -> Any:
    """Decode JSON objects/arrays that slack_sdk sends as strings inside form fields."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, dict | list):
            return decoded
    return value


def _flatten_qs(raw: str) -> dict[str, Any]:
    parsed = parse_qs(raw, keep_blank_values=True)
    return {k: (v[0] if len(v) == 1 else v) for k, v in parsed.items()}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    out: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        out[str(name)] = payload.decode("utf-8", "replace") if part.get_filename() is None else payload
    return out


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    ctype = content_type.split(";")[0].strip().lower()
    if not body:
        return {}
    if ctype == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            return {"_raw": body.decode("utf-8", "replace")}
        return decoded if isinstance(decoded, dict) else {"_json": decoded}
    if ctype == "multipart/form-data":
        return _parse_multipart(content_type, body)
    return _flatten_qs(body.decode("utf-8", "replace"))


def _json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers or {})


class FakeSlack(LoopbackHTTPFake[SlackCall]):
    """In-process Slack Web API; thread-safe, one thread per request."""

    def __init__(
        self,
        bot_token: str = "xoxb-test-token",  # noqa: S107 - a fake's fixture token
        users: Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.bot_token = bot_token
        self.app_token: str | None = None
        self.socket_mode_url: str | None = None
        self.team_id = "T1"
        self.enterprise_id: str | None = None
        self.bot_user_id = "UBOT"
        self.bot_id = "BBOT"
        self.app_id = "A1"
        self.granted_scopes: set[str] = set(REQUIRED_BOT_SCOPES)
        self.validate_views = True
        self.response_url_max_uses = 5
        self.trigger_ttl = 3.0
        self.view_errors: list[str] = []
        self.views: dict[str, dict[str, Any]] = {}

        self._users: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._error_faults: dict[str, list[_ErrorFault]] = {}
        self._http_faults: dict[str, list[_HttpFault]] = {}
        self._delays: dict[str, float] = {}
        self._response_url_faults: list[_HttpFault] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._triggers: dict[str, float | None] = {}  # id -> issued at (None once used)
        self._view_ids = itertools.count(1)
        self._seq = itertools.count(1)

        if isinstance(users, Mapping):
            for uid, kwargs in users.items():
                self.add_user(uid, **dict(kwargs))
        elif users is not None:
            for uid in users:
                self.add_user(uid)

    # ------------------------------------------------------------------ address (start/stop: LoopbackFake)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def base_url(self) -> str:
        return f"{self.url}api/"

    # ------------------------------------------------------------------ recording

    def calls(self, method: str | None = None) -> list[SlackCall]:
        """Recorded calls in arrival order, optionally only one method."""
        return self._calls_where(lambda c: method is None or c.method == method)

    def response_url_posts(self, url: str | None = None) -> list[SlackCall]:
        """POSTs to response URLs, optionally to one URL."""
        return [c for c in self.calls("response_url") if url is None or c.args.get("_url") == url]

    def reset(self) -> None:
        """Forget calls, views, faults, response URLs and trigger ids; the user registry stays."""
        with self._lock:
            self._calls.clear()
            self.views.clear()
            self.view_errors.clear()
            self.internal_errors.clear()
            self._response_urls.clear()
            self._triggers.clear()
            self.clear_faults()

    def wait_for(
        self,
        method_or_predicate: str | Callable[[SlackCall], bool] | None = None,
        timeout: float = 10,
        count: int = 1,
    ) -> list[SlackCall]:
        """Block until ``count`` matching calls exist; return all matching calls."""
        return self._wait_for_calls(method_or_predicate, "method", timeout, count)

    def opened_by(self, trigger_id: str | None, timeout: float = 10) -> SlackCall:
        """The answered views.open that used ``trigger_id`` (a SlackResult's), whatever else opened."""
        assert trigger_id, "the request carried no trigger_id"
        return self.wait_for(
            lambda c: (
                c.method == "views.open"
                and (c.args.get("trigger_id") or c.args.get("interactivity_pointer")) == trigger_id
                and c.response is not None
            ),
            timeout,
        )[-1]

    def _timeout_report(self) -> str:
        return f"Recorded calls:\n{self._dump()}"

    def _dump(self) -> str:
        lines = []
        for c in self.calls():
            args = json.dumps(c.args, default=str, ensure_ascii=False)
            if len(args) > 400:
                args = args[:400] + "..."
            resp = json.dumps(c.response, default=str, ensure_ascii=False)
            if len(resp) > 200:
                resp = resp[:200] + "..."
            lines.append(f"  {c.method} -> {c.status} {resp}\n      args={args}")
        return "\n".join(lines) or "  (none)"

    def all_recorded_text(self) -> str:
        """Every recorded call's args as one JSON string, to search for secrets."""
        with self._lock:
            dump = [{"method": c.method, "args": c.args} for c in self._calls]
        return json.dumps(dump, default=str, ensure_ascii=False)

    def view(self, view_id: str) -> dict[str, Any]:
        """The current server-side state of a view (as the user sees it)."""
        with self._lock:
            return self._public_view(self.views[view_id])

    def latest_view(self, callback_id: str | None = None) -> dict[str, Any]:
        """The most recently opened/updated view, optionally with a given callback_id."""
        with self._lock:
            candidates = [
                v for v in self.views.values() if callback_id is None or v.get("callback_id") == callback_id
            ]
            if not candidates:
                raise AssertionError(f"no view with callback_id={callback_id!r}; views: {list(self.views)}")
            newest = max(candidates, key=lambda v: v["_touched"])
            return self._public_view(newest)

    @staticmethod
    def _public_view(view: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in json.loads(json.dumps(view)).items() if not k.startswith("_")}

    # ------------------------------------------------------------------ registry

    def remove_user(self, user_id: str) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def add_user(
        self,
        user_id: str,
        *,
        tz: str | None = "America/New_York",
        tz_offset: int | None = None,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        is_bot: bool = False,
        deleted: bool = False,
        is_app_user: bool = False,
        name: str | None = None,
        team_id: str | None = None,
        enterprise_id: str | None = None,
        is_stranger: bool | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a user for users.info; returns the ``user`` object Slack would return."""
        name = name or f"user.{user_id.lower()}"
        tz_label = "Coordinated Universal Time"
        if tz is not None:
            now = datetime.now(ZoneInfo(tz))
            if tz_offset is None:
                offset = now.utcoffset()
                tz_offset = int(offset.total_seconds()) if offset is not None else 0
            tz_label = now.tzname() or tz
        real_name = name.replace(".", " ").title()
        team_id = team_id or self.team_id
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team_id,
            "name": name,
            "deleted": deleted,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": tz,
            "tz_label": tz_label,
            "tz_offset": tz_offset or 0,
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": name,
                "display_name_normalized": name,
                "email": f"{name}@example.com",
                "team": team_id,
                "image_24": "https://example.invalid/24.png",
                "image_72": "https://example.invalid/72.png",
            },
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": is_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "is_bot": is_bot,
            "is_app_user": is_app_user,
            "updated": 1700000000,
            "has_2fa": False,
        }
        if enterprise_id is not None:
            user["enterprise_user"] = {"id": user_id, "enterprise_id": enterprise_id, "teams": [team_id]}
        if is_stranger is not None:
            user["is_stranger"] = is_stranger
        user.update(extra)
        with self._lock:
            self._users[user_id] = user
        return json.loads(json.dumps(user))

    def set_usergroup(self, group_id: str, user_ids: Iterable[str]) -> None:
        """Define the members usergroups.users.list returns for a group."""
        with self._lock:
            self._usergroups[group_id] = list(user_ids)

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_private: bool = False,
        is_member: bool = True,
        is_archived: bool = False,
    ) -> dict[str, Any]:
        """Register a channel for conversations.info; returns the ``channel`` object Slack would return."""
        channel = {
            "id": channel_id,
            "name": name or f"channel-{channel_id.lower()}",
            "is_channel": not is_private,
            "is_group": False,
            "is_im": False,
            "is_private": is_private,
            "is_archived": is_archived,
            "is_member": is_member,
            "context_team_id": self.team_id,
            "created": 1700000000,
        }
        with self._lock:
            self._channels[channel_id] = channel
        return dict(channel)

    def issue_trigger_id(self) -> str:
        """A trigger id that views.open/push accept once and only within ``trigger_ttl`` seconds."""
        trigger = f"{next(self._seq)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
        with self._lock:
            self._triggers[trigger] = time.monotonic()
        return trigger

    # ------------------------------------------------------------------ faults

    def fail(
        self,
        method: str,
        error: str = "user_not_in_channel",
        times: int | None = None,
        when: ArgsPredicate | None = None,
    ) -> None:
        """Make ``method`` answer ``{"ok": false, "error": error}`` (always, or ``times`` times)."""
        with self._lock:
            self._error_faults.setdefault(method, []).append(_ErrorFault(error, times, when))

    def set_http_status(
        self,
        method: str,
        status: int,
        times: int | None = None,
        body: str | None = None,
        retry_after: str | None = "1",
    ) -> None:
        """Make ``method`` fail at HTTP level (429 carries ``Retry-After``)."""
        with self._lock:
            self._http_faults.setdefault(method, []).append(_HttpFault(status, times, body, retry_after))

    def delay(self, method: str, seconds: float) -> None:
        """Answer ``method`` only after ``seconds`` (concurrent requests are not serialised)."""
        with self._lock:
            self._delays[method] = seconds

    def fail_response_urls(
        self,
        status: int = 404,
        body: str = "no_service",
        times: int | None = None,
        retry_after: str | None = "1",
    ) -> None:
        """Make POSTs to response URLs fail with ``status``/``body`` (429 carries ``Retry-After``)."""
        with self._lock:
            self._response_url_faults.append(_HttpFault(status, times, body, retry_after))

    def clear_faults(self) -> None:
        with self._lock:
            self._error_faults.clear()
            self._http_faults.clear()
            self._delays.clear()
            self._response_url_faults.clear()

    @staticmethod
    def _take(faults: list[Any], args: dict[str, Any] | None = None) -> Any:
        for fault in faults:
            if fault.remaining == 0:
                continue
            when = getattr(fault, "when", None)
            if when is not None and not when(args or {}):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
            return fault
        return None

    # ------------------------------------------------------------------ response_url

    def new_response_url(self, label: str | None = None) -> str:
        """A fresh response_url served by this fake."""
        url = f"{self.url}response/{secrets.token_urlsafe(12)}"
        with self._lock:
            self._response_urls[urlsplit(url).path] = _ResponseUrl(url, label)
        return url

    # ------------------------------------------------------------------ dispatch

    def _finish(self, call: SlackCall, reply: Reply) -> Reply:
        try:
            response: Any = json.loads(reply.body)
        except ValueError:
            response = reply.body.decode("utf-8", "replace")
        with self._changed:
            call.status = reply.status
            call.response = response
            self._changed.notify_all()
        return reply

    def _dispatch(self, verb: str, raw_path: str, headers: Mapping[str, str], body: bytes) -> Reply | None:
        parts = urlsplit(raw_path)
        path = parts.path
        if path.startswith("/response/"):
            return self._handle_response_url(path, headers, body)
        args: dict[str, Any] = _flatten_qs(parts.query)
        args.update(_parse_body(headers.get("Content-Type", ""), body))
        args = {k: _maybe_json(v) for k, v in args.items()}
        method = path[len("/api/") :] if path.startswith("/api/") else path.lstrip("/")
        call = SlackCall(method=method, args=args, headers=headers, at=time.monotonic())
        self._record(call)

        with self._lock:
            delay = self._delays.get(method, 0.0)
        if delay and self._stopping.wait(delay):
            return None

        with self._lock:
            http_fault = self._take(self._http_faults.get(method, []))
        if http_fault is not None:
            return self._finish(call, self._http_fault_reply(http_fault))

        if not self._authorized(method, headers):
            return self._finish(call, _json_reply({"ok": False, "error": "invalid_auth"}))
        with self._lock:
            granted = (
                APP_TOKEN_SCOPES
                if method == "apps.connections.open"
                else ",".join(sorted(self.granted_scopes))
            )
        scope_header = {"x-oauth-scopes": granted}

        with self._lock:
            error_fault = self._take(self._error_faults.get(method, []), args)
        if error_fault is not None:
            return self._finish(
                call, _json_reply({"ok": False, "error": error_fault.error}, headers=scope_header)
            )

        handler = self._methods().get(method)
        if handler is None:
            result: dict[str, Any] = {"ok": False, "error": "unknown_method", "req_method": method}
        else:
            with self._lock:
                needed = METHOD_SCOPES.get(method)
                result = (self._missing_scope(needed) if needed else None) or handler(args)
        return self._finish(call, _json_reply(result, headers=scope_header))

    def _authorized(self, method: str, headers: Mapping[str, str]) -> bool:
        auth = headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        if method == "apps.connections.open":
            if self.app_token is not None:
                return secrets.compare_digest(token, self.app_token)
            return token.startswith("xapp-")
        return secrets.compare_digest(token, self.bot_token)

    @staticmethod
    def _http_fault_reply(fault: _HttpFault) -> Reply:
        headers: dict[str, str] = {}
        if fault.status == 429 and fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.body is not None:
            return Reply(fault.status, fault.body.encode(), "text/plain; charset=utf-8", headers)
        if fault.status == 429:
            return _json_reply({"ok": False, "error": "ratelimited"}, 429, headers)
        html = f"<html><body><h1>{fault.status}</h1>upstream error</body></html>"
        return Reply(fault.status, html.encode(), "text/html; charset=utf-8", headers)

    def _handle_response_url(self, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        args = _parse_body(headers.get("Content-Type", "application/json"), body)
        if "payload" in args:
            payload = _maybe_json(args.pop("payload"))
            if isinstance(payload, dict):
                args.update(payload)
        with self._lock:
            entry = self._response_urls.get(path)
        args["_url"] = entry.url if entry else f"{self.url.rstrip('/')}{path}"
        if entry is not None and entry.label is not None:
            args["_label"] = entry.label
        call = SlackCall(method="response_url", args=args, headers=headers, at=time.monotonic())
        self._record(call)
        with self._lock:
            fault = self._take(self._response_url_faults)
            if fault is None and entry is not None:
                entry.uses += 1
                over_limit = entry.uses > self.response_url_max_uses
            else:
                over_limit = False
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.status == 429 and fault.retry_after else {}
            reply = Reply(fault.status, (fault.body or "").encode(), "text/html; charset=utf-8", headers)
        elif entry is None:
            reply = Reply(404, b"no_service", "text/html; charset=utf-8")
        elif over_limit:
            reply = Reply(404, b"used_url", "text/html; charset=utf-8")
        else:
            reply = Reply(200, b"ok", "text/html; charset=utf-8")
        return self._finish(call, reply)

    # ------------------------------------------------------------------ methods (called with _lock held)

    def _missing_scope(self, needed: str) -> dict[str, Any] | None:
        """Slack's answer when the bot token lacks ``needed``; None when it is granted."""
        if needed in self.granted_scopes:
            return None
        return {
            "ok": False,
            "error": "missing_scope",
            "needed": needed,
            "provided": ",".join(sorted(self.granted_scopes)),
        }

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "auth.test": self._auth_test,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "views.publish": self._views_publish,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "apps.connections.open": self._apps_connections_open,
        }

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "mp-service-account",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
            **({"enterprise_id": self.enterprise_id} if self.enterprise_id else {}),
        }

    @staticmethod
    def _invalid(message: str) -> dict[str, Any]:
        return {"ok": False, "error": "invalid_arguments", "response_metadata": {"messages": [message]}}

    def _check_view(self, view: Any) -> str | None:
        if not isinstance(view, dict):
            return "[ERROR] missing or malformed required field: view"
        if not self.validate_views:
            return None
        from slack_sdk.errors import SlackObjectFormationError
        from slack_sdk.models.views import View

        try:
            View(**view).to_dict()
        except SlackObjectFormationError as e:
            return f"[ERROR] {e}"
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            return f"[ERROR] malformed view: {e!r}"
        return None

    def _use_trigger(self, args: dict[str, Any]) -> str | None:
        trigger = args.get("trigger_id") or args.get("interactivity_pointer")
        if not trigger:
            return "invalid_arguments"
        if trigger in self._triggers:
            issued = self._triggers[trigger]
            if issued is None:
                return "exchanged_trigger_id"
            self._triggers[trigger] = None
            if time.monotonic() - issued > self.trigger_ttl:
                return "expired_trigger_id"
        return None

    def _store_view(self, view: dict[str, Any], **meta: Any) -> dict[str, Any]:
        stored = json.loads(json.dumps(view))
        stored.update(meta)
        stored.setdefault("callback_id", "")
        stored.setdefault("private_metadata", "")
        stored.setdefault("external_id", "")
        stored.setdefault("clear_on_close", False)
        stored.setdefault("notify_on_close", False)
        stored["state"] = {"values": {}}
        stored["hash"] = f"{int(time.time())}.{secrets.token_hex(4)}"
        stored["team_id"] = self.team_id
        stored["app_id"] = self.app_id
        stored["bot_id"] = self.bot_id
        stored["_touched"] = next(self._seq)
        self.views[stored["id"]] = stored
        return self._public_view(stored)

    def _new_view_id(self) -> str:
        return f"V{next(self._view_ids):04d}"

    def _rejected_view(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to a missing or invalid ``view`` (also kept in ``.view_errors``); None if it is fine."""
        problem = self._check_view(args.get("view"))
        if not problem:
            return None
        self.view_errors.append(problem)
        return self._invalid(problem)

    def _open_view(self, args: dict[str, Any], *, new_root: bool) -> dict[str, Any]:
        """views.open (``new_root``: the view is its own root) and views.push: both spend a trigger id."""
        rejected = self._rejected_view(args)
        if rejected:
            return rejected
        trigger_error = self._use_trigger(args)
        if trigger_error == "invalid_arguments":
            return self._invalid("[ERROR] missing required field: trigger_id")
        if trigger_error:
            return {"ok": False, "error": trigger_error}
        view_id = self._new_view_id()
        root_view_id = view_id if new_root else None
        view = self._store_view(args["view"], id=view_id, root_view_id=root_view_id, previous_view_id=None)
        return {"ok": True, "view": view}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_view(args, new_root=True)

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._open_view(args, new_root=False)

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        rejected = self._rejected_view(args)
        if rejected:
            return rejected
        view_id = args.get("view_id")
        external_id = args.get("external_id")
        current: dict[str, Any] | None = None
        if view_id:
            current = self.views.get(view_id)
        elif external_id:
            current = next((v for v in self.views.values() if v.get("external_id") == external_id), None)
        else:
            return self._invalid("[ERROR] view_id or external_id is required")
        if current is None:
            return {"ok": False, "error": "not_found"}
        expected_hash = args.get("hash")
        if expected_hash and expected_hash != current["hash"]:
            return {"ok": False, "error": "hash_conflict"}
        view = self._store_view(
            args["view"],
            id=current["id"],
            root_view_id=current.get("root_view_id"),
            previous_view_id=current.get("previous_view_id"),
        )
        return {"ok": True, "view": view}

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        rejected = self._rejected_view(args)
        if rejected:
            return rejected
        if not args.get("user_id"):
            return self._invalid("[ERROR] missing required field: user_id")
        existing = next(
            (
                v["id"]
                for v in self.views.values()
                if v.get("type") == "home" and v.get("_user") == args["user_id"]
            ),
            None,
        )
        view_id = existing or self._new_view_id()
        view = self._store_view(args["view"], id=view_id, root_view_id=None, previous_view_id=None)
        self.views[view_id]["_user"] = args["user_id"]
        return {"ok": True, "view": view}

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._seq):06d}"

    @staticmethod
    def _has_content(args: dict[str, Any]) -> bool:
        return any(args.get(k) for k in ("text", "blocks", "attachments"))

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("user"):
            return {"ok": False, "error": "user_not_found"}
        if not self._has_content(args):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not self._has_content(args):
            return {"ok": False, "error": "no_text"}
        if channel[:1] in ("U", "W"):
            channel = "D" + channel
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": ts,
            "text": args.get("text", ""),
        }
        if args.get("blocks"):
            message["blocks"] = args["blocks"]
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        if not self._has_content(args):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            return {"ok": True, "channel": {"id": args["channel"]}}
        users = args.get("users")
        if isinstance(users, list):
            users = ",".join(users)
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        ids = [u.strip() for u in str(users).split(",") if u.strip()]
        channel_id = "D" + ids[0] if len(ids) == 1 else "G" + "".join(ids)
        return {"ok": True, "no_op": False, "already_open": False, "channel": {"id": channel_id}}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channels.get(str(args.get("channel", "")))
        if channel is None or (channel["is_private"] and not channel["is_member"]):
            return {"ok": False, "error": "channel_not_found"}
        missing = self._missing_scope("groups:read" if channel["is_private"] else "channels:read")
        return missing or {"ok": True, "channel": dict(channel)}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(args.get("user", "")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": json.loads(json.dumps(user))}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = self._usergroups.get(str(args.get("usergroup", "")))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.socket_mode_url:
            return {"ok": False, "error": "fake_socket_mode_url_not_set"}
        return {"ok": True, "url": self.socket_mode_url}
