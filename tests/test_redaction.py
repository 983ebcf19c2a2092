"""Log redaction: secrets never reach a handler, whatever the level, formatter or exception."""

from __future__ import annotations

import logging

from bot.redaction import REDACTED, install_log_redaction, redactor


def test_known_secrets_and_slack_shaped_tokens_are_redacted(caplog):
    install_log_redaction()
    redactor.add("mixpanel-token-0123456789abcdef")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("slack_sdk.web.base_client")

    log.debug("body: %s", {"blocks": [{"text": "Token `mixpanel-token-0123456789abcdef`"}]})
    log.info("headers %s", {"Authorization": "Bearer xoxb-123-456-abcdef"})
    log.warning("app token xapp-1-A111-222-ccc and user token xoxp-9-8-7")
    log.info("Authorization: Basic Ym90OnNlY3JldA==")

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "mixpanel-token-0123456789abcdef" not in text
    assert "xoxb-" not in text and "xapp-" not in text and "xoxp-" not in text
    assert "Ym90OnNlY3JldA==" not in text
    assert text.count(REDACTED) >= 5


def test_exceptions_carrying_a_secret_are_redacted(caplog):
    install_log_redaction()
    redactor.add("another-secret-value-42")
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError("failed with another-secret-value-42 inside")
    except ValueError:
        logging.getLogger("bot.test").exception("it broke")
    [record] = [r for r in caplog.records if r.name == "bot.test"]
    assert "another-secret-value-42" not in (record.exc_text or "")
    assert REDACTED in record.exc_text
    assert "another-secret-value-42" not in caplog.text


def test_short_strings_are_not_treated_as_secrets():
    redactor.add("ab")
    assert redactor.redact("abc ab") == "abc ab"


def test_the_bots_own_secrets_stay_redacted_after_600_handed_out_tokens(bots, caplog):
    from bot.runtime import protect_secrets
    from tests.conftest import BOT_TOKEN, MP_SECRET, SIGNING_SECRET

    protect_secrets(bots.settings())
    for number in range(600):
        redactor.add(f"handed-out-token-{number:04d}-abcdef")
    caplog.set_level(logging.DEBUG)

    logging.getLogger("bot.test").info("secrets: %s %s %s", SIGNING_SECRET, MP_SECRET, BOT_TOKEN)
    logging.getLogger("bot.test").info("newest token: handed-out-token-0599-abcdef")

    assert SIGNING_SECRET not in caplog.text and MP_SECRET not in caplog.text and BOT_TOKEN not in caplog.text
    assert "handed-out-token-0599-abcdef" not in caplog.text
    assert caplog.text.count(REDACTED) == 4


def test_log_messages_are_kept_on_one_line(caplog):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)

    logging.getLogger("bot.test").info("user said %s", "hi\r\nINFO forged line\x1b[2K\u2028more")

    [record] = [r for r in caplog.records if r.name == "bot.test"]
    assert record.getMessage() == "user said hi\\r\\nINFO forged line\\x1b[2K\\u2028more"


def test_an_exception_message_from_outside_cannot_forge_a_log_line(caplog):
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    try:
        try:
            raise ValueError("body said\nCRITICAL forged cause")
        except ValueError as cause:
            raise RuntimeError("bad answer\r\nINFO bot.create.flow: Request done\x1b[2K") from cause
    except RuntimeError:
        logging.getLogger("bot.test").exception("it broke")
    [record] = [r for r in caplog.records if r.name == "bot.test"]
    lines = record.exc_text.splitlines()
    assert "RuntimeError: bad answer\\r\\nINFO bot.create.flow: Request done\\x1b[2K" in lines
    assert "ValueError: body said\\nCRITICAL forged cause" in lines
    assert not any(line.startswith(("INFO", "CRITICAL")) for line in lines)
    # The traceback's own structure stays readable: one line per frame, as Python prints it.
    assert lines[0] == "Traceback (most recent call last):"
    assert any(line.startswith('  File "') for line in lines)


def test_destination_credentials_received_at_run_time_are_redacted_by_their_shape(caplog):
    from botocore.awsrequest import AWSRequest

    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    session_token = "FwoGZXIvYXdzEJr//////////wEaDNewRoleSessionToken+abc="
    signed = AWSRequest(
        method="POST",
        url="https://secretsmanager.eu-west-1.amazonaws.com/",
        headers={
            "X-Amz-Security-Token": session_token.encode(),
            "X-Amz-Target": "secretsmanager.PutSecretValue",
        },
    ).prepare()
    installation = "ghs_" + "A1b2C3d4" * 5
    vault = "hvs." + "CAESIJ-abc_def" * 3
    logging.getLogger("botocore.endpoint").debug("Sending http request: %s", signed)
    logging.getLogger("test").info(
        "token %s and %s, pat github_pat_11ABCDEFG0123456789_abcdefghij", installation, vault
    )

    text = "\n".join(r.getMessage() for r in caplog.records)
    assert session_token not in text and "NewRoleSessionToken" not in text
    assert installation not in text and vault not in text and "github_pat_11" not in text
    assert "secretsmanager.PutSecretValue" in text  # the rest of the line stays readable
