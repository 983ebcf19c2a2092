"""Secret stores the bot writes a new account's credentials to, so that no person ever sees them.

base (the interface every kind implements), registry (the kinds, one line each), one module per kind
(vault, aws, github) and github_auth (a token, or a GitHub App). Writing, reading back and comparing,
the create flow's use of a destination, is bot/create/secret_store.py.
"""
