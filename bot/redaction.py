"""Keep secrets out of logs, and keep every log message on one line.

slack_sdk logs whole request bodies at DEBUG, and those bodies carry the token we deliver. Redaction
happens when a log record is created, so it protects every handler, level and formatter, including
handlers attached later (pytest's, a hosting platform's). The same place escapes line breaks and other
control characters in messages: text that came from outside (a request field, a library echoing a body)
cannot start a forged log line.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections import OrderedDict

REDACTED = "[REDACTED]"
# Slack bot/user/app/refresh tokens and app-level tokens; GitHub tokens (personal, App installation, fine-
# grained) and Vault tokens, which the destinations receive at run time (an AppRole login, an installation
# token exchange) and might appear before they are pinned.
SLACK_TOKEN_PATTERN = re.compile(
    r"\b(?:(?:xox[abpre]|xapp)-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|hv[sbr]\.[A-Za-z0-9_-]{20,})"
)
# botocore logs each signed request's headers at DEBUG; a role's session token refreshes every hour or so,
# and only the first one is pinned when the destination is built.
AWS_SESSION_TOKEN_PATTERN = re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[A-Za-z0-9+/=]+")
# A Basic auth header or URL credentials would carry the bot's own Mixpanel secret.
BASIC_AUTH_PATTERN = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:basic|bearer)\s+)[A-Za-z0-9+/=._-]+"
)
MIN_SECRET_LENGTH = 6
# C0 and C1 control characters, DEL, and Unicode's own line and paragraph separators.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with every control character escaped (a newline becomes the two characters \\n)."""
    return CONTROL_CHARACTERS.sub(lambda match: _escape(match.group()), text)


def _escape(character: str) -> str:
    if character in _ESCAPES:
        return _ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class Redactor:
    """Scrubs secrets (and anything token-shaped) from text.

    The process's own credentials are pinned for its lifetime; the tokens it hands out are remembered in a
    bounded list, newest kept, so that a long-running bot does not grow without limit."""

    def __init__(self, capacity: int = 512):
        self._capacity = capacity
        self._pinned: set[str] = set()
        self._secrets: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def pin(self, secret: str | None) -> None:
        """A secret that stays redacted for as long as the process lives, however many tokens follow."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._pinned.add(secret)

    def add(self, secret: str | None) -> None:
        """A handed-out token; the oldest is forgotten once `capacity` newer ones have been added."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            self._secrets[secret] = None
            self._secrets.move_to_end(secret)
            while len(self._secrets) > self._capacity:
                self._secrets.popitem(last=False)

    def redact(self, text: str) -> str:
        with self._lock:
            # Longest first, so that a secret containing another is replaced whole.
            secrets = sorted(self._pinned.union(self._secrets), key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = SLACK_TOKEN_PATTERN.sub(REDACTED, text)
        text = AWS_SESSION_TOKEN_PATTERN.sub(lambda match: match.group(1) + REDACTED, text)
        return BASIC_AUTH_PATTERN.sub(lambda match: match.group(1) + REDACTED, text)


redactor = Redactor()
_installed = False
_install_lock = threading.Lock()


def format_exception(exc_info: tuple) -> str:
    """A traceback keeps its own lines (one per frame); each exception's message, which may carry text from
    outside (a response body, a request field), is escaped onto its single line."""
    top = traceback.TracebackException(*exc_info)
    pending, seen = [top], set()
    while pending:
        level = pending.pop()
        if id(level) in seen:
            continue
        seen.add(id(level))
        if isinstance(getattr(level, "_str", None), str):
            level._str = one_line(level._str)
        notes = getattr(level, "__notes__", None)
        if notes:
            level.__notes__ = [one_line(str(note)) for note in notes]
        pending.extend(e for e in (level.__cause__, level.__context__) if e is not None)
        pending.extend(getattr(level, "exceptions", None) or ())
    return "".join(top.format()).rstrip("\n")


def _redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not hide the record, nor leak its args
        message = str(record.msg)
    record.msg = one_line(redactor.redact(message))
    record.args = None
    if record.exc_info:
        record.exc_text = redactor.redact(format_exception(record.exc_info))
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
