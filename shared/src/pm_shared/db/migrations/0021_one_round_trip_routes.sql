-- Intents with no step outside the ledger move their money in one round trip (docs/saga.md): the
-- `transfer` step posts the principal and every fee as one linked chain of plain transfers, all or
-- nothing, and its one result records AUTHORIZED and SETTLED. Two-phase transfers stay where
-- something outside the ledger can still fail once the money is reserved (a PSP step), and for
-- MINIAPP_CHARGE and FX_EXCHANGE.
--
-- Only routes still as their migrations seeded them are changed: one an operator changed since is
-- left as the operator set it. An intent keeps the route stamped on it when it was taken in, so those
-- already under way finish two-phase, and the reconciler expects each intent's transfers by its own
-- route (`pm_shared.intents.legs.holds`).
UPDATE pm.payment_route AS r
SET steps = new.steps, updated_at = now()
FROM (
    VALUES
        ('P2P', 'INTERNAL_P2P', ARRAY['validate', 'price', 'reserve_limits', 'authorize', 'settle'],
         ARRAY['validate', 'price', 'reserve_limits', 'transfer']),
        ('ADJUSTMENT', 'INTERNAL', ARRAY['validate', 'authorize', 'settle'],
         ARRAY['validate', 'transfer']),
        ('MINIAPP_CREDIT', 'INTERNAL', ARRAY['validate', 'price', 'authorize', 'settle'],
         ARRAY['validate', 'price', 'transfer']),
        ('REFUND', 'INTERNAL', ARRAY['validate', 'price', 'authorize', 'settle'],
         ARRAY['validate', 'price', 'transfer'])
) AS new(operation_type, channel, old_steps, steps)
WHERE r.operation_type = new.operation_type
  AND r.channel = new.channel
  AND r.steps = new.old_steps;
