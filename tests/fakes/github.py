"""Loopback fake of GitHub's REST API for Actions secrets of repositories and their environments.

Real HTTP on 127.0.0.1: point the bot's GitHub base URL (``https://api.github.com`` in production) at
``fake.url``. The fake holds each public key's private half, so it decrypts every value it receives with
``SealedBox(private_key)`` and a test can assert on the plaintext the bot sent; values are never readable
through the API, as on GitHub. Errors are GitHub's ``{"message", "documentation_url", "status"}``.

Public API::

    FakeGitHub(token="ghp-test-token", repos=("acme/analytics",), api_versions=("2022-11-28",))
        token: a token with "Secrets: read and write" on every repository
        api_versions: the X-GitHub-Api-Version values accepted (the header may be left out); others: 400
        .start() -> FakeGitHub / .stop() / context manager; .url "http://127.0.0.1:PORT" (kept on restart)
        .add_repo("owner/name", *, environments=()) -> repository id
        .add_environment("owner/name", environment)
        .add_token(token, *, permission="write" | "read", repos=None)  repos: the only repositories it sees
        .rotate_key("owner/name", environment=None) -> new key_id   (values sealed to the old key: 422)
        .add_app(app_id, installation_id, public_key_pem, *, permission="write", repos=None,
                 token_lifetime=timedelta(hours=1))
            a GitHub App installation: POST /app/installations/{id}/access_tokens with a JWT (RS256, signed
            by the App's private key, iss the App id, at most 10 minutes long, not expired) -> 201
            {"token", "expires_at", "permissions"}; a bad, expired or foreign JWT -> 401; another
            installation -> 404. The token it issues works like add_token's until expires_at, then 401.
        .issued_tokens -> the installation tokens issued, in order
        .revoke_token(token)   the token is now unknown (401), as after a revocation or an early expiry

      routes (Authorization: "Bearer <token>" or "token <token>"; owner/repo case-insensitive)
        GET    /repos/{owner}/{repo}       -> {"id", "name", "full_name", "permissions": {"push", ...}, ...}
                                           (push/maintain true for a write token, false for a read one)
        GET    /repos/{owner}/{repo}/environments/{environment}        -> {"id", "name", ...}
        GET    /repos/{owner}/{repo}/actions/secrets                   -> {"total_count", "secrets": [...]}
        GET    /repos/{owner}/{repo}/actions/secrets/public-key        -> {"key_id", "key": base64}
        GET    /repos/{owner}/{repo}/actions/secrets/{name}            -> {"name", "created_at", "updated_at"}
        PUT    /repos/{owner}/{repo}/actions/secrets/{name}  {"encrypted_value", "key_id"} -> 201 | 204
        DELETE /repos/{owner}/{repo}/actions/secrets/{name}            -> 204
        the same five secrets routes under /repos/{owner}/{repo}/environments/{environment}/secrets and
        under /repositories/{repository_id}/environments/{environment}/secrets (each environment has its
        own key pair)
        No or an unknown token: 401 "Bad credentials"; a read-only token writing or deleting: 403 "Resource
        not accessible by personal access token"; a repository or environment the token cannot see: 404.
        PUT: the name must be letters, digits and _, not start with a digit or GITHUB_ (any case); it is
        stored upper-case; key_id must be the current key's and encrypted_value base64 of a sealed box to it,
        at most 48 KB once decrypted; otherwise 422.

      inspection (no request recorded)
        .secret_value("owner/name", name, environment=None) -> str | None   the decrypted plaintext
        .secret("owner/name", name, environment=None) -> dict | None        name, created_at, updated_at,
                                                                            value, writes (how many PUTs)
        .public_key("owner/name", environment=None) -> (key_id, base64 key)

      recording and faults: see tests/fakes/_recording.py (.calls, .wait_for, .fail_next, .drop_next,
        .apply_then_drop, .delay_next, .clear_faults); a failure's default body is GitHub's error shape
        (pass ``headers={"Retry-After": "1"}`` for a secondary rate limit).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox

from tests.fakes._recording import HTTPCall, RecordingHTTPFake, json_reply
from tests.fakes._server import Reply

__all__ = ["FakeGitHub"]

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_VALUE_BYTES = 48 * 1024
DOCS = "https://docs.github.com/rest/actions/secrets"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"message": message, "documentation_url": DOCS, "status": str(status)})


@dataclass
class _SecretsHolder:
    """A repository's or an environment's key pair and secrets."""

    id: int = field(default_factory=lambda: 1 + secrets.randbelow(10**9))
    private_key: PrivateKey = field(default_factory=PrivateKey.generate)
    key_id: str = field(default_factory=lambda: str(secrets.randbelow(10**18)))
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.private_key.public_key)).decode()


@dataclass
class _Repo:
    id: int
    full_name: str
    holder: _SecretsHolder = field(default_factory=_SecretsHolder)
    environments: dict[str, _SecretsHolder] = field(default_factory=dict)


@dataclass
class _Token:
    permission: str  # write | read
    repos: frozenset[str] | None  # casefolded full names; None: all
    expires_at: datetime | None = None  # an App's installation token expires


@dataclass
class _App:
    app_id: str
    installation_id: str
    public_key: Any  # cryptography's RSAPublicKey
    permission: str
    repos: frozenset[str] | None
    token_lifetime: timedelta


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGitHub(RecordingHTTPFake):
    """In-process GitHub REST API (Actions secrets); thread-safe, one thread per request."""

    def __init__(
        self,
        token: str = "ghp-test-token",  # noqa: S107 - a fake's fixture token
        repos: Iterable[str] = ("acme/analytics",),
        api_versions: Iterable[str] = ("2022-11-28",),
    ) -> None:
        super().__init__()
        self.token = token
        self.api_versions = frozenset(api_versions)
        self._ids = itertools.count(500100)
        self._repos: dict[str, _Repo] = {}
        self._tokens: dict[str, _Token] = {token: _Token("write", None)}
        self._apps: dict[str, _App] = {}
        self.issued_tokens: list[str] = []
        for name in repos:
            self.add_repo(name)

    # ------------------------------------------------------------------ configuration

    def add_repo(self, full_name: str, *, environments: Iterable[str] = ()) -> int:
        with self._lock:
            repo = self._repos.setdefault(full_name.casefold(), _Repo(next(self._ids), full_name))
            for environment in environments:
                repo.environments.setdefault(environment, _SecretsHolder())
            return repo.id

    def add_environment(self, full_name: str, environment: str) -> None:
        self.add_repo(full_name, environments=[environment])

    def add_token(self, token: str, *, permission: str = "write", repos: Iterable[str] | None = None) -> None:
        if permission not in ("write", "read"):
            raise ValueError("permission must be 'write' or 'read'")
        seen = None if repos is None else frozenset(r.casefold() for r in repos)
        with self._lock:
            self._tokens[token] = _Token(permission, seen)

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def add_app(
        self,
        app_id: str,
        installation_id: str,
        public_key_pem: bytes,
        *,
        permission: str = "write",
        repos: Iterable[str] | None = None,
        token_lifetime: timedelta = timedelta(hours=1),
    ) -> None:
        seen = None if repos is None else frozenset(r.casefold() for r in repos)
        key = serialization.load_pem_public_key(public_key_pem)
        with self._lock:
            self._apps[str(installation_id)] = _App(
                str(app_id), str(installation_id), key, permission, seen, token_lifetime
            )

    def _holder(self, full_name: str, environment: str | None) -> _SecretsHolder:
        repo = self._repos[full_name.casefold()]
        return repo.holder if environment is None else repo.environments[environment]

    def rotate_key(self, full_name: str, environment: str | None = None) -> str:
        with self._lock:
            holder = self._holder(full_name, environment)
            holder.private_key, holder.key_id = PrivateKey.generate(), str(secrets.randbelow(10**18))
            return holder.key_id

    # ------------------------------------------------------------------ inspection

    def secret(self, full_name: str, name: str, environment: str | None = None) -> dict[str, Any] | None:
        with self._lock:
            found = self._holder(full_name, environment).secrets.get(name.upper())
            return None if found is None else dict(found)

    def secret_value(self, full_name: str, name: str, environment: str | None = None) -> str | None:
        found = self.secret(full_name, name, environment)
        return None if found is None else found["value"]

    def public_key(self, full_name: str, environment: str | None = None) -> tuple[str, str]:
        with self._lock:
            holder = self._holder(full_name, environment)
            return holder.key_id, holder.public_key

    # ------------------------------------------------------------------ dispatch

    def _error_body(self, status: int) -> Any:
        return {
            "message": f"fake github: injected {status}",
            "documentation_url": DOCS,
            "status": str(status),
        }

    def _token(self, call: HTTPCall) -> _Token | None:
        scheme, _, credential = (call.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        found = self._tokens.get(credential.strip())
        if found is not None and found.expires_at is not None and datetime.now(UTC) >= found.expires_at:
            return None
        return found

    def _verified_app_claims(self, call: HTTPCall, app: _App) -> bool:
        """GitHub's rules for an App's JWT: RS256 signed by the App's key, iss the App, at most 10 minutes
        from iat to exp, not expired, iat not in the future (60 s of drift allowed)."""
        scheme, _, jwt = (call.headers.get("Authorization") or "").partition(" ")
        parts = jwt.strip().split(".")
        if scheme.lower() != "bearer" or len(parts) != 3:
            return False
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            app.public_key.verify(
                _unb64url(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, binascii.Error, InvalidSignature):
            return False
        now = datetime.now(UTC).timestamp()
        iat, exp = claims.get("iat"), claims.get("exp")
        return (
            header.get("alg") == "RS256"
            and str(claims.get("iss")) == app.app_id
            and isinstance(iat, int)
            and isinstance(exp, int)
            and exp - iat <= 600
            and iat <= now + 60
            and exp > now
        )

    def _installation_token(self, call: HTTPCall, installation_id: str) -> Reply:
        app = self._apps.get(installation_id)
        if app is None:
            # An unknown installation: GitHub cannot tell whose JWT it is before it finds the installation.
            return _error(404, "Not Found")
        if not self._verified_app_claims(call, app):
            return _error(401, "A JSON web token could not be decoded")
        token = "ghs_" + secrets.token_urlsafe(27)
        expires_at = datetime.now(UTC).replace(microsecond=0) + app.token_lifetime
        self._tokens[token] = _Token(app.permission, app.repos, expires_at)
        self.issued_tokens.append(token)
        permissions = {"secrets": app.permission, "metadata": "read"}
        return json_reply(
            201,
            {
                "token": token,
                "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": permissions,
                "repository_selection": "all" if app.repos is None else "selected",
            },
        )

    def _serve(self, call: HTTPCall) -> Reply:
        version = call.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in self.api_versions:
            return _error(400, f"API version '{version}' is not supported.")
        with self._lock:
            segments = [unquote(s) for s in call.path.split("/") if s]
            if (
                call.method == "POST"
                and len(segments) == 4
                and segments[:2] == ["app", "installations"]
                and segments[3] == "access_tokens"
            ):
                return self._installation_token(call, segments[2])
            token = self._token(call)
            if token is None:
                return _error(401, "Bad credentials")
            repo, rest = self._find_repo(segments)
            if repo is None or (token.repos is not None and repo.full_name.casefold() not in token.repos):
                return _error(404, "Not Found")
            if not rest and call.method == "GET":
                return json_reply(200, self._repo_json(repo, token))
            holder: _SecretsHolder | None = repo.holder
            if rest[:1] == ["environments"] and len(rest) >= 2:
                holder = repo.environments.get(rest[1])
                if holder is None:
                    return _error(404, "Not Found")
                if len(rest) == 2 and call.method == "GET":
                    return json_reply(200, {"id": holder.id, "name": rest[1]})
                rest = rest[2:]
            elif rest[:1] == ["actions"]:
                rest = rest[1:]
            else:
                return _error(404, "Not Found")
            if rest[:1] != ["secrets"] or len(rest) > 2:
                return _error(404, "Not Found")
            return self._secrets_route(call, token, holder, rest[1:])

    def _find_repo(self, segments: list[str]) -> tuple[_Repo | None, list[str]]:
        """``repos/{owner}/{repo}/...`` or ``repositories/{id}/...`` (the id form only for environments)."""
        if segments[:1] == ["repos"] and len(segments) >= 3:
            return self._repos.get(f"{segments[1]}/{segments[2]}".casefold()), segments[3:]
        if segments[:1] == ["repositories"] and len(segments) >= 2 and segments[2:3] == ["environments"]:
            found = [r for r in self._repos.values() if str(r.id) == segments[1]]
            return (found[0] if found else None), segments[2:]
        return None, []

    @staticmethod
    def _repo_json(repo: _Repo, token: _Token) -> dict[str, Any]:
        owner, _, name = repo.full_name.partition("/")
        writes = token.permission == "write"
        # GitHub shows the caller's own role on the repository; "push" is what writing secrets comes with
        permissions = {"admin": False, "maintain": writes, "push": writes, "triage": True, "pull": True}
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": name,
            "full_name": repo.full_name,
            "owner": {"login": owner},
            "private": True,
            "permissions": permissions,
        }

    def _secrets_route(self, call: HTTPCall, token: _Token, holder: _SecretsHolder, rest: list[str]) -> Reply:
        if not rest:
            if call.method != "GET":
                return _error(404, "Not Found")
            listed = [self._public(s) for _, s in sorted(holder.secrets.items())]
            return json_reply(200, {"total_count": len(listed), "secrets": listed})
        if rest == ["public-key"]:
            if call.method != "GET":
                return _error(404, "Not Found")
            return json_reply(200, {"key_id": holder.key_id, "key": holder.public_key})
        name = rest[0].upper()
        if call.method == "GET":
            found = holder.secrets.get(name)
            return _error(404, "Not Found") if found is None else json_reply(200, self._public(found))
        if call.method not in ("PUT", "DELETE"):
            return _error(404, "Not Found")
        if token.permission != "write":
            return _error(403, "Resource not accessible by personal access token")
        if call.method == "DELETE":
            return json_reply(204, None) if holder.secrets.pop(name, None) else _error(404, "Not Found")
        return self._put_secret(holder, name, call.json)

    @staticmethod
    def _public(stored: dict[str, Any]) -> dict[str, Any]:
        return {k: stored[k] for k in ("name", "created_at", "updated_at")}

    def _put_secret(self, holder: _SecretsHolder, name: str, body: Any) -> Reply:
        if not SECRET_NAME.match(name) or name.startswith("GITHUB_"):
            return _error(
                422, f"Invalid request.\n\nSecret names may only contain letters, digits and _: {name}"
            )
        if not isinstance(body, dict) or not isinstance(body.get("encrypted_value"), str):
            return _error(422, 'Invalid request.\n\n"encrypted_value" is required.')
        if body.get("key_id") != holder.key_id:
            return _error(422, "Invalid request.\n\nkey_id does not match the current public key.")
        try:
            sealed = base64.b64decode(body["encrypted_value"], validate=True)
            value = SealedBox(holder.private_key).decrypt(sealed).decode("utf-8")
        except (binascii.Error, CryptoError, UnicodeDecodeError):
            return _error(422, "Invalid request.\n\nencrypted_value could not be decrypted with key_id.")
        if len(value.encode()) > MAX_VALUE_BYTES:
            return _error(422, "Invalid request.\n\nSecrets are limited to 48 KB.")
        now = _now()
        previous = holder.secrets.get(name)
        holder.secrets[name] = {
            "name": name,
            "created_at": previous["created_at"] if previous else now,
            "updated_at": now,
            "value": value,
            "writes": (previous["writes"] if previous else 0) + 1,
        }
        return json_reply(204, None) if previous else json_reply(201, {})
