"""Every SQL statement `pm_shared.ledger.accounts` runs on `pm.tb_account_map` (migration 0003).

Account ids travel as text (`$n::text::uuid`, `account_id::text`) so the statements work on any
connection, whatever codec it has registered for `uuid` (the embedded ledger's pool maps uuid to int).
"""

from __future__ import annotations

_COLUMNS = "owner_kind, owner_id, currency, code, account_id::text AS account_id, ledger, flags, created_at"

# Both unique keys may conflict (the owner key on a retry, account_id only on a collision); neither
# row is touched, so a retried call changes nothing, and the caller compares what is stored.
INSERT_MAP_ROWS = """
INSERT INTO pm.tb_account_map (owner_kind, owner_id, currency, code, account_id, ledger, flags)
SELECT owner_kind, owner_id, currency, code, account_id::uuid, ledger, flags
FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bigint[], $7::int[])
    AS t(owner_kind, owner_id, currency, code, account_id, ledger, flags)
ORDER BY owner_kind, owner_id, currency, code
ON CONFLICT DO NOTHING
"""

# The stored rows for the given owner keys or account ids (to check a retried insert).
SELECT_MAP_ROWS_FOR = f"""
SELECT {_COLUMNS}
FROM pm.tb_account_map m
WHERE (owner_kind, owner_id, currency, code) IN (
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
    )
   OR account_id = ANY($5::text[]::uuid[])
"""

SELECT_MAP_ROW = f"""
SELECT {_COLUMNS}
FROM pm.tb_account_map
WHERE owner_kind = $1 AND owner_id = $2 AND currency = $3 AND code = $4
"""

SELECT_MAP_ROW_BY_ID = f"""
SELECT {_COLUMNS}
FROM pm.tb_account_map
WHERE account_id = $1::text::uuid
"""

# Keyset pagination over the whole map, in account id order (the verifier reads it in pages).
SELECT_MAP_PAGE = f"""
SELECT {_COLUMNS}
FROM pm.tb_account_map
WHERE account_id > $1::text::uuid
ORDER BY account_id
LIMIT $2
"""
