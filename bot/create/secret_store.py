"""Writing a new account's credentials to the request's destination: write, read back, compare.

The outcome is one of three, and the caller acts on each (bot/create/account.py):
- Stored: the store holds exactly what was written (GitHub: its metadata shows the write).
- NotStored: the store refused, or reading back showed nothing of ours: nothing holds the token, so the
  account must be deleted again.
- Unsettled: the write may have landed and the store cannot be read now: the request stays `created`, and
  the sweeper reads the destination later (bot/create/cleanup.py). Never written blindly twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.db.schema import StoredRequest
from bot.db.store import Store
from bot.destinations.base import Destination, DestinationError, Failure, Receipt, Replaced, SecretDocument
from bot.mixpanel.models import CreatedServiceAccount

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    receipt: Receipt
    where: str  # "Vault etl-vault at secret/mixpanel/etl-nightly (version 1)"


@dataclass(frozen=True)
class NotStored:
    failure: Failure
    detail: str


@dataclass(frozen=True)
class Unsettled:
    detail: str


Outcome = Stored | NotStored | Unsettled


class SecretStore:
    def __init__(
        self, destinations: dict[str, Destination], store: Store, api_base: str, clock: Callable[[], datetime]
    ):
        self.destinations = destinations
        self.store = store
        self.api_base = api_base
        self.clock = clock

    def put(
        self,
        request: StoredRequest,
        organization_id: int,
        account: CreatedServiceAccount,
        *,
        replacing: Replaced | None = None,
    ) -> Outcome:
        """Write `account` to the request's destination (as a new version of the secret the bot wrote for
        the account `replacing`, for a Replace…). Raises StateMoved when the sweeper took the request
        first."""
        destination = self.destinations.get(request.destination or "")
        if destination is None or not request.secret_name:
            return NotStored(Failure.REJECTED, f"destination {request.destination!r} is not configured")
        document = SecretDocument(
            username=account.username,
            secret=account.token,
            api_base=self.api_base,
            organization_id=organization_id,
            account_id=account.id,
            expires_at=request.expires_at,
        )
        request = self.store.record_store_attempt(request.id, now=self.clock())
        since = request.store_started_at or self.clock()
        name = request.secret_name or ""
        try:
            receipt = destination.write(name, document, replacing=replacing)
        except DestinationError as error:
            if error.failure is Failure.OUTCOME_UNKNOWN:
                return self.settle_by_reading(destination, name, account.id, since)
            return NotStored(error.failure, error.detail)
        try:
            verified = destination.verify(name, receipt, document, since=since)
        except DestinationError as error:
            log.warning(
                "Request %s: reading back %s failed (%s)", request.id, destination.name, error.failure
            )
            return self.settle_by_reading(destination, name, account.id, since)
        if not verified:
            return NotStored(Failure.MISMATCH, "the read-back differs from what was written")
        return Stored(receipt, destination.describe(name, receipt))

    @staticmethod
    def settle_by_reading(destination: Destination, name: str, account_id: int, since: datetime) -> Outcome:
        """After a write whose answer never came: the store decides, by what it holds."""
        try:
            found = destination.find_mark(name, account_id, since=since)
        except DestinationError as error:
            return Unsettled(f"{destination.name} could not be read back ({error.failure})")
        if found is None:
            return NotStored(Failure.OUTCOME_UNKNOWN, "no answer, and nothing of ours is stored there")
        return Stored(found, destination.describe(name, found))
