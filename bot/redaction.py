"""Keep secrets out of logs.

slack_sdk logs whole request bodies at DEBUG, and those bodies carry the token we deliver. Redaction
happens when a log record is created, so it protects every handler, level and formatter, including
handlers attached later (pytest's, a hosting platform's).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

REDACTED = "[REDACTED]"
# Slack bot/user/app/refresh tokens and app-level tokens.
SLACK_TOKEN_PATTERN = re.compile(r"\b(?:xox[abpre]|xapp)-[A-Za-z0-9-]+")
# A Basic auth header or URL credentials would carry the bot's own Mixpanel secret.
BASIC_AUTH_PATTERN = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer)\s+)[A-Za-z0-9+/=._-]+"
)
MIN_SECRET_LENGTH = 6


class Redactor:
    """Remembers secrets the process has seen and scrubs them (and anything token-shaped) from text."""

    def __init__(self, capacity: int = 512):
        self._capacity = capacity
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets[secret] = None
            self._secrets.move_to_end(secret)
            while len(self._secrets) > self._capacity:
                self._secrets.popitem(last=False)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = SLACK_TOKEN_PATTERN.sub(REDACTED, text)
        return BASIC_AUTH_PATTERN.sub(lambda match: match.group(1) + REDACTED, text)


redactor = Redactor()
_installed = False
_install_lock = threading.Lock()


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the record, nor leak its args
        message = str(record.msg)
    record.msg = redactor.redact(message)
    record.args = None
    if record.exc_info:
        formatter = logging.Formatter()
        record.exc_text = redactor.redact(formatter.formatException(record.exc_info))
        # Tracebacks are rendered from exc_text now; the live exception may hold the secret in its args.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)
    return record


def install_log_redaction() -> None:
    """Wrap the log record factory once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        original = logging.getLogRecordFactory()

        def factory(*args, **kwargs) -> logging.LogRecord:
            return _redact_record(original(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
