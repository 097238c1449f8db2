"""Reconciliation alerts (`pm.reconciliation_alert`): what PM could not settle on its own."""
