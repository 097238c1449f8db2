"""Merchants: `pm.merchant`, its service key and audit trail (`store`); SQL in `queries`."""
