"""SQL of `pm.fx_rate` and `pm.fx_quote` (pm_shared.fx.store)."""

_RATE_COLUMNS = "id, pair, rate::text AS rate, spread_bps, source, valid_from, created_by, created_at"

INSERT_RATE = f"""
INSERT INTO pm.fx_rate (pair, rate, spread_bps, source, valid_from, created_by)
VALUES ($1, $2::numeric, $3, $4, coalesce($5, now()), $6)
RETURNING {_RATE_COLUMNS}
"""

# Newest first; every rate ever set (`$1`: one pair, or all).
LIST_RATES = f"""
SELECT {_RATE_COLUMNS} FROM pm.fx_rate
WHERE $1::text IS NULL OR pair = $1
ORDER BY valid_from DESC, id DESC
LIMIT $2
"""

# The rate in force for either way of writing the pair: the newest already valid.
CURRENT_RATE = f"""
SELECT {_RATE_COLUMNS}, now() - valid_from AS age FROM pm.fx_rate
WHERE pair = ANY($1::text[]) AND valid_from <= now()
ORDER BY valid_from DESC, id DESC
LIMIT 1
"""

_QUOTE_COLUMNS = """q.id, q.owner_id, q.key_id, q.rate_id, q.sell_currency, q.buy_currency, q.sell_amount,
    q.principal, q.fee, q.buy_amount, q.created_at, q.expires_at, r.pair, r.rate::text AS rate,
    r.spread_bps, q.expires_at <= now() AS expired,
    EXISTS (SELECT 1 FROM pm.intent AS i WHERE i.id = q.id) AS used"""

INSERT_QUOTE = f"""
WITH q AS (
    INSERT INTO pm.fx_quote (id, owner_id, key_id, rate_id, sell_currency, buy_currency, sell_amount,
                             principal, fee, buy_amount, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + make_interval(secs => $11::float8))
    RETURNING *
)
SELECT {_QUOTE_COLUMNS} FROM q JOIN pm.fx_rate r ON r.id = q.rate_id
"""

SELECT_QUOTE = f"""
SELECT {_QUOTE_COLUMNS} FROM pm.fx_quote q JOIN pm.fx_rate r ON r.id = q.rate_id WHERE q.id = $1
"""
