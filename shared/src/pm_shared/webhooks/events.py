"""The event types a merchant's endpoint can subscribe to, and what makes each.

- `intent.settled` / `intent.failed`: an intent with the merchant as a party (a mini-app charge or
  credit, an adjustment of its account) reached SETTLED or FAILED;
- `refund.settled`: a REFUND the merchant made reached SETTLED (a failed refund is `intent.failed`);
- `payment_request.confirmed`: the user confirmed one of the merchant's payment requests, and the
  charge it made has been taken in (its first move after CREATED).
"""

from __future__ import annotations

from typing import Literal, get_args

EventType = Literal["intent.settled", "intent.failed", "refund.settled", "payment_request.confirmed"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
