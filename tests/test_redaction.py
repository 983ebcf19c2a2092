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
