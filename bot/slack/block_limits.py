"""Block Kit's length limits, in one place, and the helpers that keep every text within them.

Slack refuses a whole message, modal or Home view if any one text is too long, so the person would see
nothing. Anything built from data (project names, usernames of accounts made outside the bot, reasons)
goes through here.
"""

from __future__ import annotations

SECTION_TEXT = 3000  # a section's text, a context element, a message's `text`
CONFIRM_TEXT = 300  # a confirmation dialog's text
MAX_NAMED = 10  # names listed before "and N more"


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with an ellipsis when it had to be cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name_list(names: list[str], *, empty: str = "none", most: int = MAX_NAMED) -> str:
    """The first `most` names, then how many more: a long list never grows a block past its limit."""
    if not names:
        return empty
    shown = ", ".join(clip(name, 120) for name in names[:most])
    rest = len(names) - most
    return f"{shown} and {rest} more" if rest > 0 else shown
