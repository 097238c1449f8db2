"""Outbound merchant webhooks (docs/webhooks.md): the events, Standard Webhooks signing, the endpoints
and deliveries as PostgreSQL keeps them. The sender is `pm_webhooks`; the admin API is the gateway's."""
