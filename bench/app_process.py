"""The app under test as a subprocess, and the environment that points it at the fakes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench.config import DESTINATION_NAME, REPO_ROOT, SIGNING_SECRET, STARTUP_TIMEOUT, ServerKind
from bench.fakes import BenchVault
from bot.settings import Settings
from tests.fakes import bot_environment
from tests.fakes.mixpanel import FakeMixpanel
from tests.fakes.slack_api import FakeSlack


class AppProcess:
    """The app under test, as a subprocess of this interpreter, started from the repository root."""

    def __init__(self, kind: ServerKind, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.spawned_at = time.perf_counter()
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
                [sys.executable, *self.kind.argv],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self, probe: Callable[[], bool]) -> float:
        """Seconds from spawn until `probe` first succeeds."""
        assert self.proc is not None
        deadline = self.spawned_at + STARTUP_TIMEOUT
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode} before serving:\n{self.log_tail()}")
            try:
                if probe():
                    return time.perf_counter() - self.spawned_at
            except requests.RequestException:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"not serving after {STARTUP_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def process_tree(self) -> list[int]:
        """The app's pid and its descendants' (gunicorn workers are children of the master)."""
        assert self.proc is not None
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
        tree, pending = [], [self.proc.pid]
        while pending:
            pid = pending.pop()
            tree.append(pid)
            pending.extend(parents.get(pid, []))
        return tree

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the app's live processes."""
        ticks = 0
        for pid in self.process_tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float | None:
        """The largest per-process peak RSS in the app's process tree."""
        peaks = []
        for pid in self.process_tree():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
            if match:
                peaks.append(int(match.group(1)) / 1024)
        return max(peaks) if peaks else None

    def stop(self, timeout: float = 35) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit code (None: never started)."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGKILL leaves a gunicorn master's workers running: kill every process of the app.
            for pid in reversed(self.process_tree()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
            return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def app_environment(
    slack: FakeSlack, mixpanel: FakeMixpanel, workdir: Path, port: int, *, vault: BenchVault | None = None
) -> dict[str, str]:
    """The inherited environment without any of the app's own settings, plus the benchmark's. With `vault`,
    the policy declares it as the one destination, and the bot holds its token."""
    own = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in own}
    policy = workdir / "policy.yml"
    text = "rate_limit:\n  per_user_per_day: 1000\n"
    if vault is not None:
        text += (
            f"destinations:\n  - name: {DESTINATION_NAME}\n    kind: vault_kv2\n    url: {vault.url}\n"
            f"    mount: {vault.mount_point}\n    path_prefix: {vault.prefix}\n"
        )
        env["VAULT_TOKEN"] = vault.token
    policy.write_text(text)
    env.update(
        {
            **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
            "PORT": str(port),
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
            "LOG_LEVEL": "WARNING",
            "POLICY_FILE": str(policy),
        }
    )
    return env
