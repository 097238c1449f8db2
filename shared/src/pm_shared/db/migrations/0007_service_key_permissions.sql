-- A key's permissions are read on every request and listed by the admin API: a row whose JSON lacks
-- the fields pm_shared.keys.store.Permissions needs would break both, so the database refuses it.
-- (jsonb_typeof of a missing field is NULL, and a CHECK that is NULL passes: hence the coalesce.)
ALTER TABLE pm.service_key ADD CONSTRAINT service_key_permissions_shape CHECK (
    coalesce(
        jsonb_typeof(permissions -> 'operations') = 'array'
        AND jsonb_typeof(permissions -> 'admin') = 'boolean'
        AND (NOT permissions ? 'owners' OR jsonb_typeof(permissions -> 'owners') IN ('array', 'null')),
        false
    )
);
