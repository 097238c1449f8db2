"""`pm demo`'s traffic: a realistic mix of wallets, funding and payments through a running gateway.

One run, over signed HTTP only:

1. opens `users` wallets (`demo-<run>-<n>`, new every run) and funds all but `unfunded` of them with
   ADJUSTMENT intents (operator → user), each for more than the payments it will make plus fees;
2. installs the demo fee rules (`demo-p2p-pre`, `demo-p2p-post`: a new version each run), which only
   price payments between `demo-…` wallets, so other traffic is never charged by them;
3. sends `payments` P2P intents from `concurrency` workers, each submitting one and waiting for it to
   be terminal (`GET` with `Prefer: wait`) before the next. Most go between funded wallets and must
   settle; some come from an unfunded wallet (INSUFFICIENT_FUNDS) or go to a wallet that was never
   opened (ACCOUNT_NOT_FOUND). Unfunded wallets never receive, so their failures do not depend on
   the order payments happen in;
4. with `withdrawals`, sends PromptPay withdrawals from funded wallets to mobile numbers through
   adapter-ipps and its sandbox: they must settle, but for about one in eight to a number PromptPay
   does not know (PAYEE_INVALID, the hold given back);
5. reads every wallet back and compares it with what the settled intents moved.

Whatever did not go as its scenario says (a payment that should have settled and did not, fees other
than the demo rules', an intent still open, a balance that does not add up) is a `problem`: the
summary is `ok` only when there is none.
"""

from __future__ import annotations

from pm_tools.demo.errors import DemoError, GatewayUnavailableError
from pm_tools.demo.plan import (
    CURRENCIES,
    EXPECTED,
    POST_RULE,
    PRE_RULE,
    DemoOptions,
    Planned,
    User,
    demo_fees,
    fee_rules,
)
from pm_tools.demo.summary import DemoSummary, Outcome, WalletCheck
from pm_tools.demo.traffic import run_demo

__all__ = [
    "CURRENCIES",
    "EXPECTED",
    "POST_RULE",
    "PRE_RULE",
    "DemoError",
    "DemoOptions",
    "DemoSummary",
    "GatewayUnavailableError",
    "Outcome",
    "Planned",
    "User",
    "WalletCheck",
    "demo_fees",
    "fee_rules",
    "run_demo",
]
