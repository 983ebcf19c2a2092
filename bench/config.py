"""What every part of the benchmark shares: the fakes' credentials, timeouts and the servers measured."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.fakes._server import LoopbackHTTPServer

REPO_ROOT = Path(__file__).resolve().parent.parent

BOT_TOKEN = "xoxb-bench-token"  # noqa: S105 - the fakes' credentials
SIGNING_SECRET = "bench-signing-secret-0123456789"  # noqa: S105
APP_TOKEN = "xapp-1-bench-app-token"  # noqa: S105
MP_USERNAME = "bot.bench01.mp-service-account"
MP_SECRET = "mp-bench-secret-value"  # noqa: S105
ORG_ID = 1234
PROJECT_ID = 3001  # in the fake's DEFAULT_PROJECTS for ORG_ID
USER_TZ = "America/New_York"  # FakeSlack.add_user's default; the expiry date is a day in it

MIXPANEL_LATENCY = 1.5  # default: every fake Mixpanel call (/me, list, create, ...) takes this long
MIXPANEL_ROUTES = ("me", "create", "list", "get", "delete")
SLACK_DEADLINE = 3.0  # Slack gives up on an ack after 3 s
CLIENT_TIMEOUT = 10.0
VIEW_TIMEOUT = 15.0
TOKEN_TIMEOUT = 30.0
STARTUP_TIMEOUT = 30.0
POLL_INTERVAL = 0.003
TOKEN_RE = re.compile(r"[0-9a-f]{32}")  # FakeMixpanel issues secrets.token_hex(16)
FAKE_BACKLOG = LoopbackHTTPServer.request_queue_size  # the fakes widen their listen backlog themselves
# --destination vault: the policy's one destination, and where in the FakeVault the bot may write.
DESTINATION_NAME = "bench-vault"
VAULT_MOUNT = "secret"
VAULT_PREFIX = "mixpanel/"
PROBE_USER = "UBPROBE"
WARMUP_USER = "UBWARMUP"


@dataclass(frozen=True)
class ServerKind:
    name: str
    description: str
    argv: tuple[str, ...]
    socket_mode: bool = False


OURS = ServerKind(
    "http",
    "ours, HTTP mode: gunicorn (WEB_CONCURRENCY workers): python app.py --mode http",
    ("app.py", "--mode", "http"),
)
SOCKET = ServerKind(
    "socket",
    "ours, Socket Mode: python app.py --mode socket (SOCKET_MODE_PROCESSES processes)",
    ("app.py", "--mode", "socket"),
    socket_mode=True,
)
BASELINE = ServerKind(
    "baseline", "Bolt app.start(): python -m bench.baseline_server", ("-m", "bench.baseline_server")
)
