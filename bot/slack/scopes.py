"""The Slack bot token scopes the app needs; manifest.yml must request exactly these."""

REQUIRED_BOT_SCOPES: frozenset[str] = frozenset(
    {
        "commands",  # the /mp-service-account slash command
        "chat:write",  # chat.postEphemeral (results), chat.postMessage / chat.update (audit, approvals)
        "im:write",  # conversations.open: the DM fallback, and approval DMs to requesters and approvers
        # users.info: the requester's time zone, and guest / bot / deleted checks; also what the
        # user_change event (governance: owners who leave) needs.
        "users:read",
        "usergroups:read",  # usergroups.users.list: who belongs to the allowed user groups
        # conversations.info, for `python -m bot doctor`: the policy's channels exist and have the bot in
        # them. Public channels need channels:read, private ones groups:read (only those the bot is in).
        "channels:read",
        "groups:read",
    }
)
