"""Governance (issue 17): idle accounts, people who leave, accounts made outside the bot, periodic reviews
and the posture report. Pure decisions (idle, leavers, inventory, reviews, posture) are apart from the
effects (store, job, owners, actions); docs/governance.md says what the bot does on its own and what not."""
