"""Expiry reminders: a DM to the owner before an account expires, each sent once."""
