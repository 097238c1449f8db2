"""`pm demo`'s traffic: a realistic mix of wallets, funding, payments and a merchant's business through
a running gateway, checked at the end against what it sent and against the ledger itself.

One run, over signed HTTP only (and /v1/me for the users' answers):

1. opens `users` wallets (`demo-<run>-<n>`, new every run) and funds all but `unfunded` of them with
   ADJUSTMENT intents (operator → user), each for more than the payments it will make plus fees;
2. installs the demo fee rules (`demo-p2p-pre`, `demo-p2p-post`: a new version each run), which only
   price payments between `demo-…` wallets, so other traffic is never charged by them; and, with
   merchant traffic, the merchant's commission (`demo-miniapp-commission`: 1.5 % of each of its
   charges, paid by the merchant);
3. with `credits` or `charges`, onboards the demo merchant `pm-demo-shop` and its mini-app
   `pm-demo-app` (idempotent: a second run on the same database finds them again;
   `pm_tools.demo.shop`) and funds the merchant's account with an ADJUSTMENT (operator → merchant);
4. sends `payments` P2P intents from `concurrency` workers, each submitting one and waiting for it to
   be terminal (`GET` with `Prefer: wait`) before the next. Most go between funded wallets and must
   settle; some come from an unfunded wallet (INSUFFICIENT_FUNDS) or go to a wallet that was never
   opened (ACCOUNT_NOT_FOUND). Unfunded wallets never receive, so their failures do not depend on
   the order payments happen in;
5. with `withdrawals`, sends PromptPay withdrawals from funded wallets to mobile numbers through
   adapter-ipps and its sandbox: they must settle, but for about one in eight to a number PromptPay
   does not know (PAYEE_INVALID, the hold given back);
6. with `credits`, the merchant credits funded wallets (MINIAPP_CREDIT, its own key); with `charges`,
   it asks users to pay (payment requests) and the users confirm at /v1/me (`pm_tools.demo.door`),
   which makes each MINIAPP_CHARGE: they settle, but for one from an unfunded wallet
   (INSUFFICIENT_FUNDS), one the user declines (DECLINED; confirming it afterwards is refused) and
   one over the mini-app's cap (refused when asked, `over_miniapp_cap`);
7. with `exchanges` (THB runs), sets a USD/THB rate, opens and funds USD wallets for a few funded
   users, funds the operator's FX liquidity in THB and USD, and sends FX_EXCHANGEs both ways among
   the other traffic, each at a quote (`pm_tools.demo.fx_plan`, `pm_tools.demo.fx_traffic`); then a
   quote used again is refused (409 `quote_used`) and, with the ledger read, an exchange buying more
   USD than the liquidity holds fails LIQUIDITY_INSUFFICIENT;
8. with `topups` (THB runs) and a QP sandbox that answers (`pm_tools.demo.topups`; else they are left
   out, said in the notes), sets a THB/RUB rate and funds the THB liquidity first; after the other
   traffic, asks each SBP_TOPUP into a funded user's THB wallet with `Prefer: wait` until its QR is
   there (priced in roubles at intake), asks it again (the same intent and QR), pays the QR in the QP
   sandbox, and follows it: it settles, the wallet credited exactly the baht asked, the THB liquidity
   paying them, the roubles from QP clearing into the RUB liquidity (principal) and fee revenue
   (spread) (`pm_tools.demo.topup_plan`);
9. reads every wallet back (the USD ones too) and compares it with what the settled intents moved;
   with a ledger URL, checks the ledger itself: per ledger the debits equal the credits, no wallet,
   merchant account or liquidity account is below zero (QP clearing, which pays the top-ups, goes
   below zero by design: it stands for money QP owes the operator), and the merchant's account and
   the liquidity accounts moved by exactly what the run's intents say.

Whatever did not go as its scenario says (a payment that should have settled and did not, fees other
than the demo rules', an intent still open, a balance that does not add up) is a `problem`: the
summary is `ok` only when there is none. The demo makes no refunds (REFUND intents: docs/refunds.md).
"""

from __future__ import annotations

from pm_tools.demo.door import Door
from pm_tools.demo.errors import DemoError, GatewayUnavailableError
from pm_tools.demo.fx_plan import FOREIGN, PAIR, SPREAD_BPS
from pm_tools.demo.ledger_check import LedgerCheck, LiquidityCheck
from pm_tools.demo.merchant import (
    COMMISSION_RULE,
    DEMO_MERCHANT,
    DEMO_MINIAPP,
    MAX_CHARGE,
    commission,
)
from pm_tools.demo.plan import (
    CURRENCIES,
    EXPECTED,
    POST_RULE,
    PRE_RULE,
    REFUSED,
    DemoOptions,
    Liquidity,
    Merchant,
    Planned,
    Sbp,
    User,
    demo_fees,
    fee_rules,
)
from pm_tools.demo.summary import (
    DemoSummary,
    ExchangeFigures,
    Outcome,
    ShopSummary,
    TopupFigures,
    WalletCheck,
)
from pm_tools.demo.topup_plan import PAIR as TOPUP_PAIR
from pm_tools.demo.topups import QpSandbox, qp_preflight
from pm_tools.demo.traffic import run_demo

__all__ = [
    "COMMISSION_RULE",
    "CURRENCIES",
    "DEMO_MERCHANT",
    "DEMO_MINIAPP",
    "EXPECTED",
    "FOREIGN",
    "MAX_CHARGE",
    "PAIR",
    "POST_RULE",
    "PRE_RULE",
    "REFUSED",
    "SPREAD_BPS",
    "TOPUP_PAIR",
    "DemoError",
    "DemoOptions",
    "DemoSummary",
    "Door",
    "ExchangeFigures",
    "GatewayUnavailableError",
    "LedgerCheck",
    "Liquidity",
    "LiquidityCheck",
    "Merchant",
    "Outcome",
    "Planned",
    "QpSandbox",
    "Sbp",
    "ShopSummary",
    "TopupFigures",
    "User",
    "WalletCheck",
    "commission",
    "demo_fees",
    "fee_rules",
    "qp_preflight",
    "run_demo",
]
