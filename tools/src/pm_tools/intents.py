"""An intent as PostgreSQL records it, for `pm intents show`: read as the gateway reads it for the API."""

from __future__ import annotations

import uuid

from pm_client.api import Intent
from pm_gateway import views
from pm_shared import db


async def load(database_url: str, intent_id: uuid.UUID) -> Intent | None:
    """The intent with its fees, legs and timeline; None when there is no such intent."""
    conn = await db.connect(database_url)
    try:
        return await views.load(conn, intent_id)
    finally:
        await conn.close()
