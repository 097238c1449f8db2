"""A service key as the API and `pm keys --json` show it (the same shape in both: `http_api` types)."""

from __future__ import annotations

from pm_client.api import KeyPermissions, ServiceKeyInfo, ServiceKeySecret
from pm_shared.keys.store import ServiceKey


def info(key: ServiceKey) -> ServiceKeyInfo:
    """Never the secret."""
    p = key.permissions
    return ServiceKeyInfo(
        key_id=key.key_id,
        status=key.status,
        permissions=KeyPermissions(
            operations=sorted(p.operations),
            owners=sorted(p.owners) if p.owners is not None else None,
            admin=p.admin,
            merchant=p.merchant,
        ),
        description=key.description,
        created_at=key.created_at,
        rotated_at=key.rotated_at,
        deactivated_at=key.deactivated_at,
        last_used_at=key.last_used_at,
        previous_valid_until=key.previous_valid_until,
    )


def with_secret(key: ServiceKey, secret: str) -> ServiceKeySecret:
    """The answer to a create or a rotation: the only time a secret is shown."""
    return ServiceKeySecret(key_id=key.key_id, secret=secret, key=info(key))
