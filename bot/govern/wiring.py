"""Governance's parts, built once by bot/runtime.py from the manage flow and the store."""

from __future__ import annotations

from dataclasses import dataclass

from bot.db.store import Store
from bot.govern.actions import GovernActions
from bot.govern.inventory_store import InventoryStore
from bot.govern.job import GovernJob
from bot.govern.notices import Notices
from bot.govern.owners import Owners
from bot.govern.review_flow import ReviewRounds
from bot.govern.review_store import ReviewStore
from bot.govern.store import GovernanceStore
from bot.manage.flow import ManageFlow
from bot.remind.store import ReminderStore


@dataclass(frozen=True)
class Governance:
    job: GovernJob
    owners: Owners
    reviews: ReviewRounds
    actions: GovernActions


def build_governance(manage: ManageFlow, store: Store) -> Governance:
    notices = GovernanceStore(store)
    inventory = InventoryStore(store)
    owners = Owners(manage, notices)
    send = Notices(manage, notices, owners)
    reviews = ReviewRounds(manage, ReviewStore(store), notices, owners, send)
    job = GovernJob(manage, notices, inventory, owners, reviews, ReminderStore(store), send)
    reviews.delete = job.delete
    manage.d.annotate_entries = job.mark_idle
    manage.d.home_header = job.home_header
    return Governance(
        job=job, owners=owners, reviews=reviews, actions=GovernActions(manage, notices, inventory)
    )
