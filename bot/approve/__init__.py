"""Approvals: a privileged request waits for other people's yes; the token is made on the
requester's click."""
