"""Accounts made outside the bot: which of the listed accounts are unmanaged. Pure."""

from __future__ import annotations

from bot.manage.accounts import AccountEntry, Presence


def is_unmanaged(entry: AccountEntry) -> bool:
    """Live, not made by the bot (nor adopted, which gives it a record), and not the bot's own account."""
    return entry.presence is Presence.LIVE and not entry.made_by_bot and not entry.is_bot_itself


def unmanaged(entries: list[AccountEntry]) -> list[AccountEntry]:
    return [entry for entry in entries if is_unmanaged(entry)]
