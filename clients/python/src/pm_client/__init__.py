"""PM's Python SDK: `PMClient` (async) and `SyncPMClient` sign every request with a service key."""
