"""Loopback fake of HashiCorp Vault: KV version 2 mounts, token policies, AppRole login and namespaces.

Real HTTP on 127.0.0.1 so ``hvac.Client(url=fake.url, token=..., namespace=...)`` runs unchanged. Answers
follow Vault's API docs (KV v2, sys/capabilities-self, auth/approle, auth/token/lookup-self, sys/health);
errors are ``{"errors": [...]}`` with ``Content-Type: application/json``, which hvac turns into
InvalidRequest (400), Forbidden (403), InvalidPath (404), InternalServerError (500), VaultDown (503).

Public API::

    FakeVault(root_token="root-token", namespace=None, mounts=("secret",))
        namespace: the Enterprise/HCP namespace the mounts, AppRoles and tokens live in (None: root)
        .start() -> FakeVault / .stop() / context manager; .url "http://127.0.0.1:PORT" (kept on restart)
        .mount(name, *, cas_required=False)          add a KV v2 mount (``cas_required``: mount option)
        .add_token(token=None, *, policy, ttl=3600) -> token
            policy: {path pattern: capabilities}, patterns as in Vault ACLs: "secret/data/mpsa/*" is a
            prefix, anything else an exact path; the most specific pattern wins; capabilities among
            create, read, update, delete, list, deny. The root token may do anything ("root").
        .add_approle(role_id=None, secret_id=None, *, policy, ttl=3600, role_name="mpsa")
            -> (role_id, secret_id); each login issues a new token with that policy and ``ttl``
        .revoke_token(token)   the token is now unknown (403), as after its TTL ran out
        .sealed = False        True: every request but sys/health answers 503 "Vault is sealed"

      routes (under /v1; the token in X-Vault-Token; a namespace in X-Vault-Namespace)
        GET/POST/PUT/DELETE  <mount>/data/<path>      read (?version=N), write, soft-delete the latest
        GET/POST/PUT/DELETE  <mount>/metadata/<path>  LIST (or GET ?list=true) lists keys below a folder
        GET  <mount>/config        POST/PUT sys/capabilities-self   GET auth/token/lookup-self
        POST auth/approle/login    GET sys/health (no token)
        A write needs ``create`` where the path has no version yet and ``update`` where it has; a read
        ``read``; outside the policy (or with an unknown token, or a token of another namespace): 403
        {"errors": ["permission denied"]}. A namespace's token without (or with another) X-Vault-Namespace
        is unknown there: 403. The root token outside the namespace finds no mount: 404 "no handler".
        check-and-set: ``options.cas`` 0 writes only a new path, N only if the current version is N, else
        400 "check-and-set parameter did not match the current version"; a mount or path with
        cas_required refuses a write without cas: 400 "check-and-set parameter required for this call".
        custom_metadata: at most 64 keys, keys <= 128 and values <= 512 characters, values strings; a
        metadata write without custom_metadata keeps the old map, with it replaces the map.

      inspection (no request recorded)
        .secret(mount, path) -> dict | None          the data of the current version (None: none, deleted)
        .versions(mount, path) -> list[dict]         every version: version, data, created_time,
                                                     deletion_time ("" if live), destroyed
        .custom_metadata(mount, path) -> dict
        .seed(mount, path, data, custom_metadata=None) -> version   write as someone else would
        .logins -> list[str]   the tokens issued by AppRole logins, in order

      recording and faults: see tests/fakes/_recording.py (.calls, .wait_for, .fail_next, .drop_next,
        .apply_then_drop, .delay_next, .clear_faults); a failure's default body is {"errors": [...]}.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes._recording import HTTPCall, RecordingHTTPFake, json_reply
from tests.fakes._server import Reply

__all__ = ["FakeVault"]

CAPABILITIES = frozenset({"create", "read", "update", "delete", "list", "deny", "patch", "sudo"})
CAS_MISMATCH = "check-and-set parameter did not match the current version"
CAS_REQUIRED = "check-and-set parameter required for this call"
PERMISSION_DENIED = "permission denied"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _errors(status: int, *messages: str) -> Reply:
    return json_reply(status, {"errors": list(messages)})


@dataclass
class _Token:
    policy: dict[str, frozenset[str]]
    namespace: str
    ttl: int
    display_name: str
    accessor: str = field(default_factory=lambda: secrets.token_hex(12))
    issued: str = field(default_factory=_now)
    root: bool = False


@dataclass
class _Secret:
    versions: list[dict[str, Any]] = field(default_factory=list)  # index i holds version i + 1
    custom_metadata: dict[str, str] | None = None
    cas_required: bool = False
    created_time: str = field(default_factory=_now)
    updated_time: str = field(default_factory=_now)


class FakeVault(RecordingHTTPFake):
    """In-process Vault; thread-safe, one thread per request."""

    def __init__(
        self,
        root_token: str = "root-token",  # noqa: S107 - a fake's fixture token
        namespace: str | None = None,
        mounts: Iterable[str] = ("secret",),
    ) -> None:
        super().__init__()
        self.namespace = (namespace or "").strip("/")
        self.root_token = root_token
        self.sealed = False
        self.logins: list[str] = []
        self._tokens: dict[str, _Token] = {
            root_token: _Token({}, "", 0, "root", root=True),
        }
        self._approles: dict[str, tuple[str, dict[str, frozenset[str]], int, str]] = {}
        self._mounts: dict[str, bool] = {}  # name -> cas_required
        self._secrets: dict[tuple[str, str], _Secret] = {}
        for name in mounts:
            self.mount(name)

    # ------------------------------------------------------------------ configuration

    def mount(self, name: str, *, cas_required: bool = False) -> None:
        with self._lock:
            self._mounts[name.strip("/")] = cas_required

    @staticmethod
    def _policy(policy: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
        parsed = {pattern.strip("/"): frozenset(caps) for pattern, caps in policy.items()}
        for caps in parsed.values():
            if not caps <= CAPABILITIES:
                raise ValueError(f"unknown capabilities {sorted(caps - CAPABILITIES)}")
        return parsed

    def add_token(
        self, token: str | None = None, *, policy: Mapping[str, Iterable[str]], ttl: int = 3600
    ) -> str:
        token = token or f"hvs.{secrets.token_urlsafe(18)}"
        with self._lock:
            self._tokens[token] = _Token(self._policy(policy), self.namespace, ttl, "token")
        return token

    def add_approle(
        self,
        role_id: str | None = None,
        secret_id: str | None = None,
        *,
        policy: Mapping[str, Iterable[str]],
        ttl: int = 3600,
        role_name: str = "mpsa",
    ) -> tuple[str, str]:
        role_id, secret_id = role_id or str(uuid.uuid4()), secret_id or str(uuid.uuid4())
        with self._lock:
            self._approles[role_id] = (secret_id, self._policy(policy), ttl, role_name)
        return role_id, secret_id

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    # ------------------------------------------------------------------ inspection

    def seed(
        self, mount: str, path: str, data: Mapping[str, Any], custom_metadata: Mapping[str, str] | None = None
    ) -> int:
        with self._lock:
            entry = self._secrets.setdefault((mount, path.strip("/")), _Secret())
            if custom_metadata is not None:
                entry.custom_metadata = dict(custom_metadata)
            return self._add_version(entry, data)

    def versions(self, mount: str, path: str) -> list[dict[str, Any]]:
        with self._lock:
            entry = self._secrets.get((mount, path.strip("/")))
            return [] if entry is None else [dict(v, data=dict(v["data"])) for v in entry.versions]

    def secret(self, mount: str, path: str) -> dict[str, Any] | None:
        versions = self.versions(mount, path)
        if not versions or versions[-1]["deletion_time"] or versions[-1]["destroyed"]:
            return None
        return versions[-1]["data"]

    def custom_metadata(self, mount: str, path: str) -> dict[str, str]:
        with self._lock:
            entry = self._secrets.get((mount, path.strip("/")))
            return dict(entry.custom_metadata or {}) if entry else {}

    # ------------------------------------------------------------------ dispatch

    def _error_body(self, status: int) -> Any:
        return {"errors": [f"fake vault: injected {status}"]}

    def _serve(self, call: HTTPCall) -> Reply:
        if not call.path.startswith("/v1/"):
            return _errors(404)
        route = call.path[len("/v1/") :].strip("/")
        verb = "LIST" if call.method == "GET" and call.query.get("list") == "true" else call.method
        body = call.json if isinstance(call.json, dict) else {}
        if route == "sys/health":
            return self._health()
        if self.sealed:
            return _errors(503, "Vault is sealed")
        namespace = (call.headers.get("X-Vault-Namespace") or "").strip("/")
        if route == "auth/approle/login" and verb in ("POST", "PUT") and namespace == self.namespace:
            return self._approle_login(body)
        with self._lock:
            token = self._tokens.get(call.headers.get("X-Vault-Token") or "")
            if token is None or not self._visible(token, namespace):
                return _errors(403, PERMISSION_DENIED)
            if route == "auth/token/lookup-self" and verb == "GET":
                return self._lookup_self(call.headers["X-Vault-Token"], token)
            if route == "sys/capabilities-self" and verb in ("POST", "PUT"):
                return self._capabilities_self(token, body)
            return self._kv(token, namespace, route, verb, body, call.query)

    @staticmethod
    def _visible(token: _Token, namespace: str) -> bool:
        """A token works in its namespace and the namespaces below it (root-namespace tokens everywhere)."""
        return (
            not token.namespace or namespace == token.namespace or namespace.startswith(token.namespace + "/")
        )

    def _health(self) -> Reply:
        state = {"initialized": True, "sealed": self.sealed, "standby": False, "performance_standby": False}
        now = int(datetime.now(UTC).timestamp())
        return json_reply(503 if self.sealed else 200, {**state, "server_time_utc": now, "version": "1.17.0"})

    def _approle_login(self, body: Mapping[str, Any]) -> Reply:
        with self._lock:
            role = self._approles.get(str(body.get("role_id") or ""))
            if role is None or not secrets.compare_digest(str(body.get("secret_id") or ""), role[0]):
                return _errors(400, "invalid role or secret ID")
            _, policy, ttl, role_name = role
            client_token = f"hvs.{secrets.token_urlsafe(18)}"
            token = _Token(policy, self.namespace, ttl, f"approle-{role_name}")
            self._tokens[client_token] = token
            self.logins.append(client_token)
        auth = {
            "client_token": client_token,
            "accessor": token.accessor,
            "policies": ["default", role_name],
            "token_policies": ["default", role_name],
            "metadata": {"role_name": role_name},
            "lease_duration": ttl,
            "renewable": True,
            "entity_id": "",
            "token_type": "service",
            "orphan": True,
        }
        return json_reply(200, {**self._envelope(None), "auth": auth})

    @staticmethod
    def _envelope(data: Any) -> dict[str, Any]:
        return {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }

    def _lookup_self(self, raw: str, token: _Token) -> Reply:
        data = {
            "accessor": token.accessor,
            "creation_time": token.issued,
            "creation_ttl": token.ttl,
            "display_name": token.display_name,
            "expire_time": None,
            "id": raw,
            "issue_time": token.issued,
            "namespace_path": f"{token.namespace}/" if token.namespace else "",
            "policies": ["root"] if token.root else ["default"],
            "renewable": not token.root,
            "ttl": token.ttl,
            "type": "service",
        }
        return json_reply(200, self._envelope(data))

    @staticmethod
    def _capabilities(token: _Token, path: str) -> list[str]:
        """Vault's ACL: an exact pattern beats any prefix, a longer prefix beats a shorter; deny wins."""
        if token.root:
            return ["root"]
        if path in token.policy:
            caps = token.policy[path]
        else:
            prefixes = [p for p in token.policy if p.endswith("*") and path.startswith(p[:-1])]
            caps = token.policy[max(prefixes, key=len)] if prefixes else frozenset()
        return ["deny"] if not caps or "deny" in caps else sorted(caps)

    def _allowed(self, token: _Token, path: str, capability: str) -> bool:
        caps = self._capabilities(token, path)
        return "root" in caps or capability in caps

    def _capabilities_self(self, token: _Token, body: Mapping[str, Any]) -> Reply:
        paths = body.get("paths") or body.get("path") or []
        paths = [paths] if isinstance(paths, str) else list(paths)
        data: dict[str, Any] = {p: self._capabilities(token, p.strip("/")) for p in paths}
        if len(paths) == 1:  # Vault keeps this key for clients of the single-path API
            data["capabilities"] = data[paths[0]]
        return json_reply(200, {**data, **self._envelope(data)})

    # ------------------------------------------------------------------ KV version 2

    def _kv(
        self,
        token: _Token,
        namespace: str,
        route: str,
        verb: str,
        body: Mapping[str, Any],
        query: Mapping[str, str],
    ) -> Reply:
        mount, _, rest = route.partition("/")
        kind, _, path = rest.partition("/")
        needed = {"GET": "read", "LIST": "list", "DELETE": "delete"}.get(verb)
        known = namespace == self.namespace and mount in self._mounts
        entry = self._secrets.get((mount, path)) if known else None
        if verb in ("POST", "PUT"):
            has_data = entry is not None and (kind == "metadata" or bool(entry.versions))
            needed = "update" if has_data else "create"
        if needed is None or not self._allowed(token, route, needed):
            return _errors(403, PERMISSION_DENIED)
        if not known or kind not in ("data", "metadata", "config") or (kind != "config") != bool(path):
            return _errors(404, f'no handler for route "{route}". route entry not found.')
        if kind == "config" and verb == "GET":
            cas = self._mounts[mount]
            return json_reply(200, self._envelope({"cas_required": cas, "max_versions": 0}))
        if kind == "data" and verb == "GET":
            return self._read(entry, query.get("version"))
        if kind == "data" and verb in ("POST", "PUT"):
            return self._write(mount, path, entry, body)
        if kind == "metadata" and verb == "LIST":
            keys = self._keys_below(mount, path)
            return json_reply(200, self._envelope({"keys": keys})) if keys else _errors(404)
        if kind == "metadata" and verb == "GET":
            return _errors(404) if entry is None else json_reply(200, self._envelope(self._metadata(entry)))
        if kind == "metadata" and verb in ("POST", "PUT"):
            return self._write_metadata(mount, path, entry, body)
        if kind == "metadata" and verb == "DELETE":
            self._secrets.pop((mount, path), None)
            return json_reply(204, None)
        if kind == "data" and verb == "DELETE" and entry is not None and entry.versions:
            entry.versions[-1]["deletion_time"] = _now()
        return json_reply(204, None)

    def _keys_below(self, mount: str, folder: str) -> list[str]:
        """LIST's answer: the names right below ``folder``, sub-folders with a trailing slash."""
        prefix = f"{folder.rstrip('/')}/"
        keys = set()
        for secret_mount, path in self._secrets:
            if secret_mount == mount and path.startswith(prefix):
                head, slash, _ = path[len(prefix) :].partition("/")
                keys.add(head + slash)
        return sorted(keys)

    def _add_version(self, entry: _Secret, data: Mapping[str, Any]) -> int:
        version = {
            "version": len(entry.versions) + 1,
            "data": dict(data),
            "created_time": _now(),
            "deletion_time": "",
            "destroyed": False,
        }
        entry.versions.append(version)
        entry.updated_time = version["created_time"]
        return version["version"]

    def _version_metadata(self, entry: _Secret, version: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("version", "created_time", "deletion_time", "destroyed")
        return {**{k: version[k] for k in keys}, "custom_metadata": entry.custom_metadata}

    def _write(self, mount: str, path: str, entry: _Secret | None, body: Mapping[str, Any]) -> Reply:
        data, options = body.get("data"), body.get("options") or {}
        if not isinstance(data, dict):
            return _errors(400, "no data provided")
        cas = options.get("cas") if isinstance(options, dict) else None
        current = len(entry.versions) if entry else 0
        if cas is None and (self._mounts[mount] or (entry is not None and entry.cas_required)):
            return _errors(400, CAS_REQUIRED)
        if cas is not None and (not isinstance(cas, int) or cas != current):
            return _errors(400, CAS_MISMATCH)
        entry = entry or self._secrets.setdefault((mount, path), _Secret())
        number = self._add_version(entry, data)
        return json_reply(200, self._envelope(self._version_metadata(entry, entry.versions[number - 1])))

    def _read(self, entry: _Secret | None, raw_version: str | None) -> Reply:
        if entry is None or not entry.versions:
            return _errors(404)
        try:
            number = int(raw_version or 0) or len(entry.versions)
        except ValueError:
            return _errors(400, "invalid version")
        if not 1 <= number <= len(entry.versions):
            return _errors(404)
        version = entry.versions[number - 1]
        metadata = self._version_metadata(entry, version)
        if version["deletion_time"] or version["destroyed"]:  # Vault answers 404 but still says why
            return json_reply(404, self._envelope({"data": None, "metadata": metadata}))
        return json_reply(200, self._envelope({"data": dict(version["data"]), "metadata": metadata}))

    def _metadata(self, entry: _Secret) -> dict[str, Any]:
        versions = {
            str(v["version"]): {k: v[k] for k in ("created_time", "deletion_time", "destroyed")}
            for v in entry.versions
        }
        return {
            "cas_required": entry.cas_required,
            "created_time": entry.created_time,
            "current_version": len(entry.versions),
            "custom_metadata": entry.custom_metadata,
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": 1 if entry.versions else 0,
            "updated_time": entry.updated_time,
            "versions": versions,
        }

    def _write_metadata(self, mount: str, path: str, entry: _Secret | None, body: Mapping[str, Any]) -> Reply:
        custom = body.get("custom_metadata")
        if custom is not None:
            problem = self._custom_metadata_problem(custom)
            if problem:
                return _errors(400, problem)
        cas_required = body.get("cas_required")
        if cas_required is not None and not isinstance(cas_required, bool):
            return _errors(400, "cas_required must be a boolean")
        entry = entry or self._secrets.setdefault((mount, path), _Secret())
        if custom is not None:
            entry.custom_metadata = dict(custom)
        if cas_required is not None:
            entry.cas_required = cas_required
        entry.updated_time = _now()
        return json_reply(204, None)

    @staticmethod
    def _custom_metadata_problem(custom: Any) -> str | None:
        if not isinstance(custom, dict):
            return "custom_metadata must be a map of strings"
        if len(custom) > 64:
            return "custom_metadata may hold at most 64 keys"
        for key, value in custom.items():
            if not isinstance(value, str):
                return f"custom_metadata value of {key!r} must be a string"
            if not key or len(key) > 128 or len(value) > 512:
                return f"custom_metadata {key!r}: keys 1-128 and values at most 512 characters"
        return None
