"""Slack as an outside system: private delivery, the directory of people, 429 budgets, scopes and
Block Kit limits."""
