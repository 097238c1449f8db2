"""pm-webhooks: delivers merchants' webhooks (docs/webhooks.md)."""
