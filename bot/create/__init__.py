"""The create flow: the form, the submission, the policy decision, making the account, delivering its
token, and cleaning up after a create whose outcome was unknown."""
