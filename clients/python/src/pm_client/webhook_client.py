"""The SDK's calls for merchants' outbound webhooks (docs/webhooks-api.md), an admin key's: endpoints,
their secrets, the delivery log and replays. `PMClient` and `SyncPMClient` (`pm_client.client`) have
them through these two mixins, which only build each `calls.Call` and hand it to the client's `_send`.

`rotate_webhook_secret` is not retried on a dropped connection (a second rotation would lose the
first's secret); the others are (a creation by its Idempotency-Key, a replay asked twice before the
sender attempts it is one attempt).
"""

from __future__ import annotations

from typing import TypeVar

from pm_client import calls, webhook_api

T = TypeVar("T")

DEFAULT_GRACE_S = 86_400


class AsyncWebhookCalls:
    async def _send(self, call: calls.Call[T]) -> T:
        raise NotImplementedError

    async def create_webhook_endpoint(
        self, merchant_id: str, url: str, event_types: list[str], *, idempotency_key: str
    ) -> webhook_api.WebhookEndpointSecret:
        """A merchant's new endpoint and its signing secret (`whsec_…`): store the secret now. The same
        call again (same key and request) answers the same endpoint, its secret while not rotated."""
        return await self._send(calls.create_webhook_endpoint(merchant_id, url, event_types, idempotency_key))

    async def list_webhook_endpoints(self, merchant_id: str) -> list[webhook_api.WebhookEndpoint]:
        return await self._send(calls.list_webhook_endpoints(merchant_id))

    async def get_webhook_endpoint(self, endpoint_id: str) -> webhook_api.WebhookEndpointDetail:
        """The endpoint and its changes (who created, rotated, disabled, enabled it, and when)."""
        return await self._send(calls.get_webhook_endpoint(endpoint_id))

    async def rotate_webhook_secret(
        self, endpoint_id: str, *, grace_seconds: int = DEFAULT_GRACE_S
    ) -> webhook_api.WebhookEndpointSecret:
        """A new secret; the previous one signs too for `grace_seconds` (the receiver accepts either)."""
        return await self._send(calls.rotate_webhook_secret(endpoint_id, grace_seconds))

    async def disable_webhook_endpoint(
        self, endpoint_id: str, *, reason: str | None = None
    ) -> webhook_api.WebhookEndpoint:
        return await self._send(calls.disable_webhook_endpoint(endpoint_id, reason))

    async def enable_webhook_endpoint(self, endpoint_id: str) -> webhook_api.WebhookEndpoint:
        return await self._send(calls.enable_webhook_endpoint(endpoint_id))

    async def list_webhook_deliveries(
        self,
        *,
        merchant_id: str | None = None,
        endpoint_id: str | None = None,
        status: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> webhook_api.WebhookDeliveryPage:
        """Newest first; the next page is `before=int(page.next_cursor)`."""
        return await self._send(
            calls.list_webhook_deliveries(merchant_id, endpoint_id, status, before, limit)
        )

    async def get_webhook_delivery(self, delivery_id: int) -> webhook_api.WebhookDeliveryDetail:
        """The delivery, the exact body it sends and its attempts."""
        return await self._send(calls.get_webhook_delivery(delivery_id))

    async def replay_webhook_delivery(self, delivery_id: int) -> webhook_api.WebhookDelivery:
        """Deliver it again (PENDING, due now); PMError 409 `webhook_endpoint_disabled` for a disabled
        endpoint."""
        return await self._send(calls.replay_webhook_delivery(delivery_id))


class SyncWebhookCalls:
    def _send(self, call: calls.Call[T]) -> T:
        raise NotImplementedError

    def create_webhook_endpoint(
        self, merchant_id: str, url: str, event_types: list[str], *, idempotency_key: str
    ) -> webhook_api.WebhookEndpointSecret:
        """A merchant's new endpoint and its signing secret (`whsec_…`): store the secret now. The same
        call again (same key and request) answers the same endpoint, its secret while not rotated."""
        return self._send(calls.create_webhook_endpoint(merchant_id, url, event_types, idempotency_key))

    def list_webhook_endpoints(self, merchant_id: str) -> list[webhook_api.WebhookEndpoint]:
        return self._send(calls.list_webhook_endpoints(merchant_id))

    def get_webhook_endpoint(self, endpoint_id: str) -> webhook_api.WebhookEndpointDetail:
        """The endpoint and its changes (who created, rotated, disabled, enabled it, and when)."""
        return self._send(calls.get_webhook_endpoint(endpoint_id))

    def rotate_webhook_secret(
        self, endpoint_id: str, *, grace_seconds: int = DEFAULT_GRACE_S
    ) -> webhook_api.WebhookEndpointSecret:
        """A new secret; the previous one signs too for `grace_seconds` (the receiver accepts either)."""
        return self._send(calls.rotate_webhook_secret(endpoint_id, grace_seconds))

    def disable_webhook_endpoint(
        self, endpoint_id: str, *, reason: str | None = None
    ) -> webhook_api.WebhookEndpoint:
        return self._send(calls.disable_webhook_endpoint(endpoint_id, reason))

    def enable_webhook_endpoint(self, endpoint_id: str) -> webhook_api.WebhookEndpoint:
        return self._send(calls.enable_webhook_endpoint(endpoint_id))

    def list_webhook_deliveries(
        self,
        *,
        merchant_id: str | None = None,
        endpoint_id: str | None = None,
        status: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> webhook_api.WebhookDeliveryPage:
        """Newest first; the next page is `before=int(page.next_cursor)`."""
        return self._send(calls.list_webhook_deliveries(merchant_id, endpoint_id, status, before, limit))

    def get_webhook_delivery(self, delivery_id: int) -> webhook_api.WebhookDeliveryDetail:
        """The delivery, the exact body it sends and its attempts."""
        return self._send(calls.get_webhook_delivery(delivery_id))

    def replay_webhook_delivery(self, delivery_id: int) -> webhook_api.WebhookDelivery:
        """Deliver it again (PENDING, due now); PMError 409 `webhook_endpoint_disabled` for a disabled
        endpoint."""
        return self._send(calls.replay_webhook_delivery(delivery_id))
