"""Send requests to the app exactly as Slack does: signed HTTP POSTs with Slack's payload shapes.

The ``build_payload_*`` functions are pure, so the same payload can go over HTTP (``SlackSender``) or over
Socket Mode (``FakeSocketModeServer.send_envelope("slash_commands" | "interactive", payload)``).

Public API::

    sign_request(secret, timestamp, body) -> str           "v0=<hex HMAC-SHA256 of 'v0:{ts}:{body}'>"
    new_trigger_id() -> str
    build_view_state(view, values) -> {"values": {block_id: {action_id: {...}}}}
    build_payload_slash_command(user_id, *, text="", channel_id="C0GENERAL", response_url, trigger_id=None,
                                team_id="T1", command="/mp-service-account", user_name=None,
                                channel_name=None) -> dict[str, str]     (the form fields)
    build_payload_view_submission(view, *, user_id, values, trigger_id=None, team_id="T1") -> dict
    build_payload_view_closed(view, *, user_id, team_id="T1", is_cleared=False) -> dict
    build_payload_block_suggestion(view, *, user_id, block_id, action_id, value, team_id="T1") -> dict
    build_payload_block_actions(*, user_id, actions, view=None, container=None, response_url=None,
                                channel_id=None, trigger_id=None, team_id="T1") -> dict
    build_payload_event_callback(event, *, team_id="T1") -> dict          (the Events API envelope)
    build_event_app_home_opened(user_id, *, tab="home", view=None) -> dict  (the inner event)

    SlackSender(base_url, signing_secret, timeout=10)      base_url: the app's request URL
        .slash_command(user_id, *, response_url, text="", channel_id="C0GENERAL", trigger_id=None, ...)
        .view_submission(view, *, user_id, values, ...)
        .view_closed(view, *, user_id, ...)
        .block_suggestion(view, *, user_id, block_id, action_id, value, ...)
        .block_actions(*, user_id, actions, view=None, container=None, response_url=None,
                       channel_id=None, ...)
        .event_callback(event, ...)      JSON body, as the Events API sends it
        .send_form(fields, ...) / .send_raw(body, content_type, ...)
      every sending method also takes: sign=True, secret=None (sign with another secret),
      timestamp=None (e.g. int(time.time()) - 600 for a stale request), headers=None (extra headers),
      url=None (override the target URL)
      -> SlackResult(.status, .text, .headers, .elapsed (s, perf_counter), .json() -> Any | None)

``values`` for view_submission maps block_id -> the user's choice; the element type decides the shape:
plain_text_input / email / url / number_input -> value (str), static/external/users/conversations/channels
selects and radio_buttons -> selected_*; multi_* selects and checkboxes -> lists; datepicker -> "YYYY-MM-DD"
(date accepted); datetimepicker -> UNIX seconds (datetime accepted); timepicker -> "HH:MM".
Input blocks without a value are still present in state, empty, as Slack sends them.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

import requests

__all__ = [
    "SlackResult",
    "SlackSender",
    "build_event_app_home_opened",
    "build_payload_block_actions",
    "build_payload_block_suggestion",
    "build_payload_event_callback",
    "build_payload_slash_command",
    "build_payload_view_closed",
    "build_payload_view_submission",
    "build_view_state",
    "new_trigger_id",
    "sign_request",
]

TEAM = {"id": "T1", "domain": "test"}
API_APP_ID = "A1"
LEGACY_TOKEN = "legacy-verification-token"
# SlackSender.send_raw's keyword options; a sending method hands every other keyword to its payload builder.
_SEND_OPTIONS = ("sign", "secret", "timestamp", "headers", "url")


def sign_request(secret: str, timestamp: str | int, body: str | bytes) -> str:
    """Slack's v0 request signature: HMAC-SHA256 of ``v0:{timestamp}:{raw body}``."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = b"v0:" + str(timestamp).encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def new_trigger_id() -> str:
    """A trigger id shaped like Slack's ("<digits>.<digits>.<hex>")."""
    return f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def _user(user_id: str, team_id: str) -> dict[str, Any]:
    name = f"user.{user_id.lower()}"
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _team(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": TEAM["domain"] if team_id == TEAM["id"] else team_id.lower()}


# ---------------------------------------------------------------------- view state


def _options(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        found.extend(group.get("options") or [])
    if isinstance(element.get("initial_option"), Mapping):
        found.append(element["initial_option"])
    found.extend(element.get("initial_options") or [])
    return found


def _option(element: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """The full option object Slack would send for ``value`` (or ``value`` itself if it is an option)."""
    if isinstance(value, Mapping) and "value" in value:
        return dict(value)
    for option in _options(element):
        if option.get("value") == value:
            return copy.deepcopy(option)
    return {"text": {"type": "plain_text", "text": str(value), "emoji": True}, "value": str(value)}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | Mapping):
        return [value]
    return list(value)


def _element_state(element: Mapping[str, Any], value: Any, present: bool) -> dict[str, Any]:
    kind = element.get("type", "")
    state: dict[str, Any] = {"type": kind}
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        state["value"] = None if not present or value is None else str(value)
    elif kind in ("static_select", "external_select", "radio_buttons"):
        state["selected_option"] = _option(element, value) if present and value is not None else None
    elif kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        state["selected_options"] = [_option(element, v) for v in _as_list(value)] if present else []
    elif kind == "datepicker":
        if isinstance(value, date):
            value = value.isoformat()
        state["selected_date"] = value if present else None
    elif kind == "datetimepicker":
        if isinstance(value, datetime):
            value = int(value.timestamp())
        state["selected_date_time"] = int(value) if present and value is not None else None
    elif kind == "timepicker":
        state["selected_time"] = value if present else None
    elif kind == "users_select":
        state["selected_user"] = value if present else None
    elif kind == "multi_users_select":
        state["selected_users"] = _as_list(value) if present else []
    elif kind == "conversations_select":
        state["selected_conversation"] = value if present else None
    elif kind == "multi_conversations_select":
        state["selected_conversations"] = _as_list(value) if present else []
    elif kind == "channels_select":
        state["selected_channel"] = value if present else None
    elif kind == "multi_channels_select":
        state["selected_channels"] = _as_list(value) if present else []
    else:
        state["value"] = value if present else None
    return state


def build_view_state(view: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``view.state`` as Slack builds it from the user's choices, keyed block_id -> action_id."""
    state: dict[str, Any] = {}
    input_blocks = {
        b["block_id"]: b
        for b in view.get("blocks") or []
        if b.get("type") == "input" and b.get("block_id") and isinstance(b.get("element"), Mapping)
    }
    unknown = sorted(set(values) - set(input_blocks))
    if unknown:
        raise ValueError(
            f"values for block_ids {unknown} not among the view's input blocks {sorted(input_blocks)}"
        )
    for block_id, block in input_blocks.items():
        element = block["element"]
        action_id = element.get("action_id") or f"{block_id}-action"
        present = block_id in values
        state[block_id] = {action_id: _element_state(element, values.get(block_id), present)}
    return {"values": state}


def _full_view(
    view: Mapping[str, Any], team_id: str, state: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The view object as Slack puts it in interaction payloads."""
    full = copy.deepcopy(dict(view))
    full.setdefault("id", "V" + secrets.token_hex(4).upper())
    full.setdefault("team_id", team_id)
    full.setdefault("type", "modal")
    full.setdefault("private_metadata", "")
    full.setdefault("callback_id", "")
    full.setdefault("hash", f"{int(time.time())}.{secrets.token_hex(4)}")
    full.setdefault("clear_on_close", False)
    full.setdefault("notify_on_close", False)
    full.setdefault("root_view_id", full["id"])
    full.setdefault("previous_view_id", None)
    full.setdefault("app_id", API_APP_ID)
    full.setdefault("external_id", "")
    full.setdefault("app_installed_team_id", team_id)
    full.setdefault("bot_id", "BBOT")
    full["state"] = dict(state) if state is not None else full.get("state") or {"values": {}}
    return full


# ---------------------------------------------------------------------- payload builders


def build_payload_slash_command(
    user_id: str,
    *,
    text: str = "",
    channel_id: str = "C0GENERAL",
    response_url: str,
    trigger_id: str | None = None,
    team_id: str = "T1",
    command: str = "/mp-service-account",
    user_name: str | None = None,
    channel_name: str | None = None,
) -> dict[str, str]:
    """The form fields of a slash command (also the Socket Mode ``slash_commands`` payload)."""
    if channel_name is None:
        channel_name = "directmessage" if channel_id.startswith("D") else channel_id.lower()
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "team_domain": _team(team_id)["domain"],
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name or f"user.{user_id.lower()}",
        "command": command,
        "text": text,
        "api_app_id": API_APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def _interaction_base(kind: str, user_id: str, team_id: str, trigger_id: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": kind,
        "team": _team(team_id),
        "user": _user(user_id, team_id),
        "api_app_id": API_APP_ID,
        "token": LEGACY_TOKEN,
    }
    if kind != "block_suggestion":
        payload["trigger_id"] = trigger_id or new_trigger_id()
    return payload


def build_payload_view_submission(
    view: Mapping[str, Any],
    *,
    user_id: str,
    values: Mapping[str, Any],
    trigger_id: str | None = None,
    team_id: str = "T1",
) -> dict[str, Any]:
    """A ``view_submission`` interaction payload for ``view`` filled in with ``values``."""
    payload = _interaction_base("view_submission", user_id, team_id, trigger_id)
    payload.update(
        {
            "view": _full_view(view, team_id, build_view_state(view, values)),
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
    )
    return payload


def build_payload_view_closed(
    view: Mapping[str, Any], *, user_id: str, team_id: str = "T1", is_cleared: bool = False
) -> dict[str, Any]:
    """A ``view_closed`` payload (sent only for views with ``notify_on_close``)."""
    payload = _interaction_base("view_closed", user_id, team_id)
    payload.pop("trigger_id", None)
    payload.update(
        {
            "view": _full_view(view, team_id),
            "is_cleared": is_cleared,
            "is_enterprise_install": False,
            "enterprise": None,
        }
    )
    return payload


def build_payload_block_suggestion(
    view: Mapping[str, Any],
    *,
    user_id: str,
    block_id: str,
    action_id: str,
    value: str,
    team_id: str = "T1",
) -> dict[str, Any]:
    """An external-select options request typed into ``block_id``/``action_id`` of ``view``."""
    full = _full_view(view, team_id)
    payload = _interaction_base("block_suggestion", user_id, team_id)
    payload.update(
        {
            "container": {"type": "view", "view_id": full["id"]},
            "block_id": block_id,
            "action_id": action_id,
            "value": value,
            "view": full,
            "is_enterprise_install": False,
            "enterprise": None,
        }
    )
    return payload


def build_payload_block_actions(
    *,
    user_id: str,
    actions: Iterable[Mapping[str, Any]],
    view: Mapping[str, Any] | None = None,
    container: Mapping[str, Any] | None = None,
    response_url: str | None = None,
    channel_id: str | None = None,
    trigger_id: str | None = None,
    team_id: str = "T1",
) -> dict[str, Any]:
    """A ``block_actions`` payload; each action needs ``action_id`` (``type`` defaults to button)."""
    action_ts = f"{time.time():.6f}"
    filled = []
    for action in actions:
        item = {"type": "button", "block_id": "", "action_ts": action_ts}
        item.update(dict(action))
        if "action_id" not in item:
            raise ValueError(f"action without action_id: {action}")
        filled.append(item)
    payload = _interaction_base("block_actions", user_id, team_id, trigger_id)
    payload["actions"] = filled
    payload["is_enterprise_install"] = False
    payload["enterprise"] = None
    full = _full_view(view, team_id) if view is not None else None
    if container is None:
        if full is not None:
            container = {"type": "view", "view_id": full["id"]}
        elif channel_id is not None:
            container = {
                "type": "message",
                "message_ts": "1700000000.000100",
                "channel_id": channel_id,
                "is_ephemeral": True,
            }
    if container is not None:
        payload["container"] = dict(container)
    if full is not None:
        payload["view"] = full
    if channel_id is not None:
        payload["channel"] = {"id": channel_id, "name": channel_id.lower()}
    if response_url is not None:
        payload["response_url"] = response_url
    return payload


def build_event_app_home_opened(
    user_id: str, *, tab: str = "home", view: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``app_home_opened``: ``view`` is the Home view Slack holds (absent the first time)."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": "D" + user_id[1:],
        "tab": tab,
        "event_ts": f"{time.time():.6f}",
    }
    if view is not None:
        event["view"] = dict(view)
    return event


def build_payload_event_callback(event: Mapping[str, Any], *, team_id: str = "T1") -> dict[str, Any]:
    """The Events API envelope around ``event`` (sent as a JSON body)."""
    return {
        "token": LEGACY_TOKEN,
        "team_id": team_id,
        "api_app_id": API_APP_ID,
        "event": dict(event),
        "type": "event_callback",
        "event_id": "Ev" + secrets.token_hex(6).upper(),
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team_id, "user_id": "UBOT", "is_bot": True}],
        "is_ext_shared_channel": False,
    }


# ---------------------------------------------------------------------- HTTP


@dataclass
class SlackResult:
    """What the app answered."""

    status: int
    text: str
    elapsed: float
    headers: Mapping[str, str] = field(default_factory=dict)
    # The trigger the request carried, to find the views.open it led to (FakeSlack.opened_by) rather
    # than counting calls, which another click's listener, still running after its ack, can overtake.
    trigger_id: str | None = None

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON (e.g. an empty 200 ack)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class SlackSender:
    """Posts signed requests to the app's request URL, like Slack's servers; safe to share across threads."""

    def __init__(self, base_url: str, signing_secret: str, timeout: float = 10) -> None:
        self.base_url = base_url
        self.signing_secret = signing_secret
        self.timeout = timeout

    def send_raw(
        self,
        body: str | bytes,
        content_type: str = "application/x-www-form-urlencoded",
        *,
        sign: bool = True,
        secret: str | None = None,
        timestamp: int | str | None = None,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> SlackResult:
        """POST ``body`` with Slack's headers and (unless ``sign=False``) a v0 signature."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        ts = str(int(time.time()) if timestamp is None else timestamp)
        request_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": ts,
        }
        if sign:
            request_headers["X-Slack-Signature"] = sign_request(secret or self.signing_secret, ts, raw)
        request_headers.update(headers or {})
        started = time.perf_counter()
        # One connection per request (no shared Session): thread-safe for concurrent load tests.
        response = requests.post(
            url or self.base_url, data=raw, headers=request_headers, timeout=self.timeout
        )
        elapsed = time.perf_counter() - started
        return SlackResult(response.status_code, response.text, elapsed, dict(response.headers))

    def send_form(self, fields: Mapping[str, Any], **options: Any) -> SlackResult:
        """POST form fields (how Slack sends slash commands)."""
        return self.send_raw(urlencode(fields), "application/x-www-form-urlencoded", **options)

    def send_json(self, payload: Mapping[str, Any], **options: Any) -> SlackResult:
        """POST a JSON body (how Slack sends Events API requests)."""
        return self.send_raw(json.dumps(payload), "application/json", **options)

    def send_interaction(self, payload: Mapping[str, Any], **options: Any) -> SlackResult:
        """POST ``payload=<json>`` (how Slack sends every interactivity request)."""
        return self.send_form({"payload": json.dumps(payload)}, **options)

    # Each of these takes its build_payload_* function's arguments plus send_raw's keyword options.

    def slash_command(self, user_id: str, **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_form, build_payload_slash_command, user_id, **arguments)

    def view_submission(self, view: Mapping[str, Any], **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_interaction, build_payload_view_submission, view, **arguments)

    def view_closed(self, view: Mapping[str, Any], **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_interaction, build_payload_view_closed, view, **arguments)

    def block_suggestion(self, view: Mapping[str, Any], **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_interaction, build_payload_block_suggestion, view, **arguments)

    def block_actions(self, **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_interaction, build_payload_block_actions, **arguments)

    def event_callback(self, event: Mapping[str, Any], **arguments: Any) -> SlackResult:
        return self._build_and_send(self.send_json, build_payload_event_callback, event, **arguments)

    @staticmethod
    def _build_and_send(
        send: Callable[..., SlackResult], build: Callable[..., Any], *args: Any, **arguments: Any
    ) -> SlackResult:
        """``send(build(*args, **payload_arguments), **options)``, options being send_raw's keywords."""
        options = {name: arguments.pop(name) for name in _SEND_OPTIONS if name in arguments}
        payload = build(*args, **arguments)
        result = send(payload, **options)
        result.trigger_id = payload.get("trigger_id")
        return result
