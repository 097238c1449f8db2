"""SQL of the embedded ledger engine (schema `ledger`, migration 0002). Parameters are positional.

u128 values travel as `uuid` (a binary codec maps them to Python ints, see store.py); u128 amounts as
numeric. Optional filters follow TigerBeetle: a zero value means "no filter".
"""

from __future__ import annotations

# pg_advisory_xact_lock key of the ledger writer ("pm_ldg" in ASCII). Sent with BEGIN in one simple-
# protocol round trip; the lock is held until COMMIT/ROLLBACK, so two writers can never interleave.
BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock(123615054685287)"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

SELECT_LAST_TIMESTAMP = "SELECT last_timestamp FROM ledger.engine_state WHERE singleton"


def commit_at(last_timestamp: int) -> str:
    """Record the last timestamp used and COMMIT, as one simple query (one round trip). The value is
    an int written as digits, never text from outside; if the UPDATE fails, the COMMIT in the same
    string is not run and the transaction stays aborted for the caller's ROLLBACK."""
    return f"UPDATE ledger.engine_state SET last_timestamp = {int(last_timestamp)} WHERE singleton; COMMIT"


# Lookups by id lists are nested loops over the primary key, one probe per id: a subquery with
# LIMIT is never flattened into a join, so the planner cannot trade the probes for a sequential scan
# (which it does for a long `id = ANY($1)` once the table is a few hundred thousand rows, making every
# request slower as the ledger grows).
_BY_IDS = """
SELECT r.* FROM unnest($1::uuid[]) AS wanted(id)
CROSS JOIN LATERAL (SELECT {columns} FROM ledger.{table} WHERE id = wanted.id LIMIT 1) AS r
"""

SELECT_ACCOUNTS = _BY_IDS.format(
    columns="""id, debits_pending, debits_posted, credits_pending, credits_posted, user_data_128,
    user_data_64, user_data_32, ledger, code, flags, timestamp""",
    table="accounts",
)

# The transfers a create_transfers batch can meet: those with one of its ids or pending ids ($1), and
# the pending transfers of existing posts/voids among them (a repeated post/void is compared with
# its pending transfer). Duplicates are dropped by the caller's dict.
_BATCH_COLUMNS = """id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, user_data_64,
    user_data_32, timeout, ledger, code, flags, timestamp, pending_status, expires_at"""
SELECT_TRANSFERS_FOR_BATCH = f"""
WITH found AS MATERIALIZED ({_BY_IDS.format(columns=_BATCH_COLUMNS, table="transfers")})
SELECT * FROM found
UNION ALL
SELECT p.* FROM found
CROSS JOIN LATERAL (
    SELECT {_BATCH_COLUMNS} FROM ledger.transfers WHERE id = found.pending_id LIMIT 1
) AS p
WHERE found.pending_id <> '00000000-0000-0000-0000-000000000000'::uuid
"""

SELECT_BURNED = _BY_IDS.format(columns="id", table="failed_transfers")

# Expiry: due reservations, in (expires_at, timestamp) order.
SELECT_DUE_PENDINGS = """
SELECT id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, user_data_64, user_data_32,
       timeout, ledger, code, flags, timestamp, pending_status, expires_at
FROM ledger.transfers
WHERE pending_status = 1 AND expires_at IS NOT NULL AND expires_at <= $1
ORDER BY expires_at, timestamp
"""

SELECT_NEXT_EXPIRY = """
SELECT min(expires_at) FROM ledger.transfers WHERE pending_status = 1 AND expires_at IS NOT NULL
"""

# What imported events are checked against.
SELECT_MAX_ACCOUNT_TIMESTAMP = "SELECT coalesce(max(timestamp), 0) FROM ledger.accounts"
SELECT_MAX_TRANSFER_TIMESTAMP = "SELECT coalesce(max(timestamp), 0) FROM ledger.transfers"
SELECT_ACCOUNT_TIMESTAMPS = "SELECT timestamp FROM ledger.accounts WHERE timestamp = ANY($1::bigint[])"
SELECT_TRANSFER_TIMESTAMPS = "SELECT timestamp FROM ledger.transfers WHERE timestamp = ANY($1::bigint[])"

ACCOUNT_COLUMNS: tuple[str, ...] = (
    "id",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "ledger",
    "code",
    "flags",
    "timestamp",
)
TRANSFER_COLUMNS: tuple[str, ...] = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "pending_id",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "timeout",
    "ledger",
    "code",
    "flags",
    "timestamp",
    "pending_status",
    "expires_at",
    "dr_debits_pending",
    "dr_debits_posted",
    "dr_credits_pending",
    "dr_credits_posted",
    "cr_debits_pending",
    "cr_debits_posted",
    "cr_credits_pending",
    "cr_credits_posted",
)

UPDATE_ACCOUNT_BALANCES = """
UPDATE ledger.accounts AS a
SET debits_pending = u.dp, debits_posted = u.dpo, credits_pending = u.cp, credits_posted = u.cpo,
    flags = u.flags
FROM unnest($1::uuid[], $2::numeric[], $3::numeric[], $4::numeric[], $5::numeric[], $6::integer[])
     AS u(id, dp, dpo, cp, cpo, flags)
WHERE a.id = u.id
"""

UPDATE_PENDING_STATUS = """
UPDATE ledger.transfers AS t
SET pending_status = u.status
FROM unnest($1::uuid[], $2::smallint[]) AS u(id, status)
WHERE t.id = u.id
"""

INSERT_BURNED = """
INSERT INTO ledger.failed_transfers (id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING
"""

# Lookups: the caller restores request order and repeats duplicates.
LOOKUP_ACCOUNTS = SELECT_ACCOUNTS

LOOKUP_TRANSFERS = _BY_IDS.format(
    columns="""id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, user_data_64,
    user_data_32, timeout, ledger, code, flags, timestamp""",
    table="transfers",
)

# get_account_transfers / get_account_balances: one account's transfers with both sides' balance
# snapshots; $1 account, $2-$5 user_data_128/64/32 and code (0 = any), $6/$7 inclusive timestamp
# bounds, $8 limit. Both sides are two ordered index scans merged (an OR would walk the timestamp
# index across every account's transfers); no transfer has the same account on both sides
# (accounts_must_be_different).

# Built once from constant fragments (the six variants differ only in side and direction); every
# value is still a $n parameter.
_ONE_SIDE = """
SELECT id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, user_data_64, user_data_32,
       timeout, ledger, code, flags, timestamp,
       dr_debits_pending, dr_debits_posted, dr_credits_pending, dr_credits_posted,
       cr_debits_pending, cr_debits_posted, cr_credits_pending, cr_credits_posted
FROM ledger.transfers
WHERE {side}_account_id = $1
  AND ($2::uuid = '00000000-0000-0000-0000-000000000000'::uuid OR user_data_128 = $2)
  AND ($3::numeric = 0 OR user_data_64 = $3)
  AND ($4::bigint = 0 OR user_data_32 = $4)
  AND ($5::integer = 0 OR code = $5)
  AND timestamp >= $6 AND timestamp <= $7
ORDER BY timestamp {order}
LIMIT $8
"""
_BOTH_SIDES = """
SELECT * FROM (({debits}) UNION ALL ({credits})) AS both_sides
ORDER BY timestamp {order}
LIMIT $8
"""


def _both(order: str) -> str:
    return _BOTH_SIDES.format(
        debits=_ONE_SIDE.format(side="debit", order=order),
        credits=_ONE_SIDE.format(side="credit", order=order),
        order=order,
    )


ACCOUNT_TRANSFERS_DEBITS = _ONE_SIDE.format(side="debit", order="ASC")
ACCOUNT_TRANSFERS_DEBITS_REVERSED = _ONE_SIDE.format(side="debit", order="DESC")
ACCOUNT_TRANSFERS_CREDITS = _ONE_SIDE.format(side="credit", order="ASC")
ACCOUNT_TRANSFERS_CREDITS_REVERSED = _ONE_SIDE.format(side="credit", order="DESC")
ACCOUNT_TRANSFERS_BOTH = _both("ASC")
ACCOUNT_TRANSFERS_BOTH_REVERSED = _both("DESC")

# query_accounts / query_transfers: $1-$3 user_data_128/64/32, $4 ledger, $5 code (0 = any), $6/$7
# timestamp bounds, $8 limit.

_QUERY = """
SELECT {columns}
FROM ledger.{table}
WHERE ($1::uuid = '00000000-0000-0000-0000-000000000000'::uuid OR user_data_128 = $1)
  AND ($2::numeric = 0 OR user_data_64 = $2)
  AND ($3::bigint = 0 OR user_data_32 = $3)
  AND ($4::bigint = 0 OR ledger = $4)
  AND ($5::integer = 0 OR code = $5)
  AND timestamp >= $6 AND timestamp <= $7
ORDER BY timestamp {order}
LIMIT $8
"""
_ACCOUNT_COLUMNS = """
       id, debits_pending, debits_posted, credits_pending, credits_posted, user_data_128, user_data_64,
       user_data_32, ledger, code, flags, timestamp"""
_TRANSFER_COLUMNS = """
       id, debit_account_id, credit_account_id, amount, pending_id, user_data_128, user_data_64,
       user_data_32, timeout, ledger, code, flags, timestamp"""

QUERY_ACCOUNTS = _QUERY.format(columns=_ACCOUNT_COLUMNS, table="accounts", order="ASC")
QUERY_ACCOUNTS_REVERSED = _QUERY.format(columns=_ACCOUNT_COLUMNS, table="accounts", order="DESC")
QUERY_TRANSFERS = _QUERY.format(columns=_TRANSFER_COLUMNS, table="transfers", order="ASC")
QUERY_TRANSFERS_REVERSED = _QUERY.format(columns=_TRANSFER_COLUMNS, table="transfers", order="DESC")
