"""Rotation: an account that lives in a secret store is replaced before it expires, with an overlap.

states (the pure state machine), schedule (which accounts are due, and when the old one goes: pure), store
(the rotation records, each step a compare-and-set), flow (one rotation, step by step), job (`python -m bot
rotate` and the in-app schedule), messages and views. docs/rotation.md says what each does.
"""
