"""`python -m bot rotate` as an operator runs it: a subprocess with the app's settings and policy file,
beside the running app, against the fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.conftest import SIGNING_SECRET
from tests.fakes import bot_environment
from tests.fakes.vault import FakeVault
from tests.rotation_harness import SECRET_PATH, mint, rotating_bot
from tests.test_destinations import VAULT_POLICY

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def vault():
    with FakeVault() as fake:
        yield fake


@pytest.mark.subprocess
def test_python_m_bot_rotate_plans_then_rotates(bots, vault, slack, mixpanel, tmp_path):
    token = vault.add_token(policy=VAULT_POLICY)
    bot, _ = rotating_bot(bots, vault, slack, vault_token=token)
    old = mint(bot)
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(
        yaml.safe_dump(
            {
                "destinations": [
                    {"name": "etl-vault", "kind": "vault_kv2", "url": vault.url, "path_prefix": "mixpanel/"}
                ],
                "rotation": {"days_before_expiry": 14},
            }
        )
    )
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "MIXPANEL_", "POLICY_", "VAULT_"))
        },
        **bot_environment(slack, mixpanel, signing_secret=SIGNING_SECRET),
        "DATABASE_URL": bot.runtime.settings.database_url,
        "POLICY_FILE": str(policy_file),
        "VAULT_TOKEN": token,
    }
    when = (old.expires_at - timedelta(days=13)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def rotate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bot", "rotate", "--now", when, *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    dry = rotate("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would rotate: {old.mixpanel_username} (etl-vault/etl-nightly)" in dry.stdout
    assert len(vault.versions("secret", SECRET_PATH)) == 1 and len(mixpanel.create_calls()) == 1

    real = rotate()
    assert real.returncode == 0, real.stderr
    assert "successor_created -> written -> verified -> overlapping" in real.stdout
    assert len(vault.versions("secret", SECRET_PATH)) == 2
    assert mixpanel.tokens[max(mixpanel.tokens)] not in real.stdout + real.stderr
