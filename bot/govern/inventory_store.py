"""Storage for accounts made outside the bot: the ones first seen (each told once) and the ones adopted.
Each write is guarded by a primary key or a unique submission key, so a second click or instance is a no-op.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.schema import REQUESTS, AuditEvent, Base, RequestState, StoredRequest, UTCDateTime
from bot.db.store import Store
from bot.manage.store import AccountRef, LifecycleStore
from bot.models import Role


class AdoptedAccount(Base):
    __tablename__ = "adopted_accounts"

    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    request_id: Mapped[str] = mapped_column(ForeignKey("account_requests.id"))
    mixpanel_creator: Mapped[int | None] = mapped_column(BigInteger)
    adopted_by: Mapped[str] = mapped_column(String(32))
    adopted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UnmanagedAccount(Base):
    __tablename__ = "unmanaged_accounts"

    mixpanel_account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str] = mapped_column(String(255))
    mixpanel_creator: Mapped[int | None] = mapped_column(BigInteger)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


ADOPTIONS = AdoptedAccount.__table__
UNMANAGED = UnmanagedAccount.__table__


class InventoryStore:
    def __init__(self, store: Store):
        self._store = store

    # --- adoption and unmanaged accounts ---------------------------------------------------------------

    def adopt(
        self,
        *,
        account_id: int,
        username: str,
        role: Role,
        project_ids: tuple[int, ...],
        expires_at: datetime | None,
        created_at: datetime | None,
        mixpanel_creator: int | None,
        admin_id: str,
        owner_id: str,
        now: datetime,
    ) -> StoredRequest | None:
        """Give an account made outside the bot a delivered record (requested by the adopting admin, owned
        by `owner_id`): from then on it is managed, reminded and reviewed like the bot's own. Its token was
        never the bot's to see. None: it was adopted already (the submission key is unique)."""
        request_id = uuid.uuid4().hex
        row: dict[str, Any] = {
            "id": request_id,
            "submission_key": f"adopt:{account_id}",
            "requester_id": admin_id,
            "owner_id": owner_id,
            "team_id": None,
            "channel_id": None,
            "username": username,
            "role": str(role),
            "project_ids": list(project_ids),
            "expires_at": expires_at,
            "state": str(RequestState.DELIVERED),
            "mixpanel_account_id": account_id,
            "mixpanel_username": username,
            # Mixpanel's creation time, so that adopting counts against nobody's daily limit.
            "created_at": created_at or now,
            "updated_at": now,
        }
        try:
            with self._store._write() as connection:
                connection.execute(insert(REQUESTS).values(row))
                connection.execute(
                    insert(ADOPTIONS).values(
                        mixpanel_account_id=account_id,
                        request_id=request_id,
                        mixpanel_creator=mixpanel_creator,
                        adopted_by=admin_id,
                        adopted_at=now,
                    )
                )
                request = StoredRequest.of(
                    connection.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).mappings().one()
                )
                LifecycleStore.action_row(
                    connection,
                    AuditEvent.ADOPTED,
                    AccountRef(account_id, username, request),
                    actor_id=admin_id,
                    detail=f"adopted; owner {owner_id}; made in Mixpanel by user {mixpanel_creator}",
                    now=now,
                )
            return request
        except IntegrityError:
            return None

    def adopted(self) -> set[int]:
        with self._store._read() as connection:
            return {
                row.mixpanel_account_id for row in connection.execute(select(ADOPTIONS.c.mixpanel_account_id))
            }

    def first_seen(self, accounts: list[tuple[int, str, int | None]], *, now: datetime) -> list[int]:
        """Record unmanaged accounts (id, username, Mixpanel creator) not seen before; returns the new ids."""
        with self._store._read() as connection:
            seen = {
                row.mixpanel_account_id for row in connection.execute(select(UNMANAGED.c.mixpanel_account_id))
            }
        new = []
        for account_id, username, creator in accounts:
            if account_id in seen:
                continue
            try:
                with self._store._write() as connection:
                    connection.execute(
                        insert(UNMANAGED).values(
                            mixpanel_account_id=account_id,
                            username=username[:255],
                            mixpanel_creator=creator,
                            first_seen_at=now,
                        )
                    )
                new.append(account_id)
            except IntegrityError:
                continue  # another run saw it first
        return new
