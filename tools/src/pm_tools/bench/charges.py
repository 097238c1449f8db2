"""Benchmark of merchant charges beside P2P payments: MINIAPP_CHARGEs settled per second from the user's
confirmation to SETTLED, beside P2P intents measured in the same run the same way (goal: ≥ 80 % of
P2P/s, issue 15: "payment-request confirm → SETTLED charges/s beside P2P").

The fleet is the saga benchmark's (`services`: ledger-writer, orchestrators, reconciler and gateway as
real processes with their default settings, `users` funded wallets), its gateway given a proxy secret,
and a merchant onboarded through the admin API with a mini-app that charges (`merchant`). Both types
are priced by the same two fee rules (1 % before, 1.00 flat after, paid by the payer), so the fee
engine does the same work for each.

Three kinds of flow (`flows`), each run by `concurrency` workers in a closed loop for `warmup_s`, then
`seconds` measured:

- a charge, the goal's: the payer confirms an OPEN payment request (`POST
  /v1/me/payment-requests/{id}/confirm` straight to the gateway with `X-PM-User` and the proxy secret,
  the headers nginx would add: 202 with the MINIAPP_CHARGE intent), then the worker waits until the
  intent is terminal. The requests are made beforehand, untimed: inserted OPEN in bulk before each
  such phase (`merchant.open_requests`, as the front-door benchmark does), as many as the phase could
  possibly confirm (`pool_size`). In bulk rather than through `POST /v1/payment-requests`: it takes a
  fraction of a second for thousands, where signed requests would stretch every round by seconds of
  gateway work that is not measured, and the rows are the ones the gateway writes. A request is
  confirmed once; a worker that finds none left stops with `closed.ExhaustedError`, and the phase is
  then not clean (its figures a lower bound) and says so: never a silent stop;
- a charge with its request, informational (no goal): the merchant asks (`POST /v1/payment-requests`,
  its own key: 201), then the same confirmation and wait. The whole way a merchant's charge goes, so
  that nothing is hidden; its latency from the confirmation is reported beside it;
- a P2P payment, the baseline: a signed `POST /v1/intents` (202), then the same wait.

The phases rotate (P2P, charge, charge with its request; then the other way round, …) for `rounds`
rounds on the one fleet, each after the tail of the one before has drained; each kind's figure is its
best phase, as the gateway benchmark takes the best of its runs.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pm_client.client import PMAuth
from pm_tools.bench import closed, flows, harness, merchant, model, runs, services, tables, workload
from pm_tools.bench.flows import Flow, Kind, Phase

GOAL = 0.80
"""Charges (confirm → SETTLED) settled/s as a share of P2P settled/s, same run."""
P2P, CHARGE = flows.P2P, merchant.CHARGE
REQUESTS = "/v1/payment-requests"
CONFIRM = Kind(f"{CHARGE} (confirm)", "confirm → CREATED (gateway)")
FULL = Kind(
    f"{CHARGE} (request + confirm)",
    "payment request + confirm → CREATED (gateway)",
    intake_stage="confirm → CREATED (gateway)",
)
KINDS = (flows.PAYMENT, CONFIRM, FULL)
"""In the order of a round (every other round reversed)."""
MIN_FLOW_S = 0.010
"""No charge settles sooner than this after its confirmation (the gateway, the orchestrator and two
ledger commands apart, and the wait polls every 5 ms): what `pool_size` assumes."""
GROUP = "closed-loop runs (first request → SETTLED)"
"""The report's group of these stage sets."""


def pool_size(concurrency: int, warmup_s: float, seconds: float) -> int:
    """OPEN payment requests made ready for one confirm phase: each worker confirms at most one per
    `MIN_FLOW_S` while the clock runs, plus one started just before it stops."""
    return concurrency * (math.ceil((warmup_s + seconds) / MIN_FLOW_S) + 1)


@dataclass(frozen=True)
class _Charges:
    shop: merchant.Shop
    users: Sequence[str]
    watch: flows.Watch
    rng: secrets.SystemRandom

    def confirming(self, pool: Sequence[tuple[str, str]]) -> flows.Operation:
        """Flows that each confirm the next (request id, payer) of `pool`, until there is none left."""

        async def confirm(http: httpx.AsyncClient, n: int) -> Flow:
            if n >= len(pool):
                raise closed.ExhaustedError(
                    f"all {len(pool):,} OPEN payment requests made ready for the phase were confirmed "
                    f"before it ended (flows faster than {MIN_FLOW_S * 1000:g} ms): the figures are a "
                    "lower bound; raise charges.MIN_FLOW_S's assumption"
                )
            request_id, payer = pool[n]
            headers = merchant.as_front_door(self.shop, payer)
            confirmed = await http.post(merchant.confirm_path(request_id), headers=headers)
            if confirmed.status_code != 202:
                return flows.refused("confirm", confirmed)
            return await flows.settle(self.watch, Flow(intent_id=flows.created_id(confirmed)))

        return confirm

    async def with_request(self, http: httpx.AsyncClient, n: int) -> Flow:
        """The merchant's payment request, then the payer's confirmation, then the wait."""
        payer = self.rng.choice(self.users)
        body = merchant.request_body(payer)
        asked = await http.post(REQUESTS, content=body, headers=flows.fresh(), auth=self.shop.key)
        if asked.status_code != 201:
            return flows.refused(f"POST {REQUESTS}", asked)
        confirm_sent = time.time()
        path = merchant.confirm_path(flows.created_id(asked))
        confirmed = await http.post(path, headers=merchant.as_front_door(self.shop, payer))
        if confirmed.status_code != 202:
            return flows.refused("confirm", confirmed)
        made = Flow(intent_id=flows.created_id(confirmed), intake_sent=confirm_sent)
        return await flows.settle(self.watch, made)

    async def pool(self, rig: services.Rig, size: int) -> list[tuple[str, str]]:
        """`size` OPEN payment requests of random payers, inserted in bulk: (request id, payer)."""
        payers = [self.rng.choice(self.users) for _ in range(size)]
        made = await merchant.open_requests(rig.conn, self.shop, payers)
        return list(zip(made, payers, strict=True))


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargesResult:
    concurrency: int
    warmup_s: float
    seconds: float
    orchestrators: int
    users: int
    pool: int
    """OPEN payment requests made ready before each confirm phase."""
    p2p: list[Phase]
    charges: list[Phase]
    """Confirm → SETTLED: the goal's."""
    full: list[Phase]
    """Payment request + confirm → SETTLED: informational."""

    @property
    def best_p2p(self) -> Phase:
        return flows.best(self.p2p)

    @property
    def best_charge(self) -> Phase:
        return flows.best(self.charges)

    @property
    def best_full(self) -> Phase:
        return flows.best(self.full)

    @property
    def ratio(self) -> float:
        """Charges/s (confirm → SETTLED) ÷ P2P/s, the best phase of each: the goal's."""
        return flows.ratio(self.best_charge, self.best_p2p)

    @property
    def full_ratio(self) -> float:
        """Charges/s with their requests ÷ P2P/s, the best phase of each: informational."""
        return flows.ratio(self.best_full, self.best_p2p)

    @property
    def phases(self) -> list[Phase]:
        return [*self.p2p, *self.charges, *self.full]

    @property
    def clean(self) -> bool:
        return all(phase.clean for phase in self.phases)

    @property
    def cpu_bound_ratio(self) -> float | None:
        """Charges/s ÷ P2P/s as their CPU per flow predicts it (best phases; `harness.cpu_bound_ratio`)."""
        return harness.cpu_bound_ratio(self.best_p2p.cpu_ms, self.best_charge.cpu_ms)

    @property
    def full_cpu_bound_ratio(self) -> float | None:
        return harness.cpu_bound_ratio(self.best_p2p.cpu_ms, self.best_full.cpu_ms)


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    concurrency: int = 32,
    seconds: float = 5.0,
    rounds: int = 3,
    warmup_s: float = flows.WARMUP_S,
    orchestrators: int = 1,
    users: int = workload.USERS,
) -> ChargesResult:
    """`rounds` rounds of a P2P phase, a charges phase and a charges-with-requests phase (the order
    reversed every other round), on one fleet."""
    if rounds < 1 or concurrency < 1 or users < 2:
        raise ValueError("at least one round, one worker and two wallets")
    secret = merchant.proxy_secret()
    size = (concurrency, warmup_s, seconds)
    pool = pool_size(*size)
    phases: dict[str, list[Phase]] = {kind.name: [] for kind in KINDS}
    async with services.running(
        server_dsn,
        redis_url,
        "charges",
        orchestrators=orchestrators,
        users=users,
        setup=workload.Setup(priced=(P2P, CHARGE)),
        gateway_variables={merchant.PROXY_SECRET_VARIABLE: secret},
    ) as rig:
        admin = await merchant.admin_key(rig.dsn, rig.kek)
        shop = await merchant.onboard(rig.fleet.gateway, admin, secret)
        async with flows.watching(rig.dsn) as watch:
            rng = secrets.SystemRandom()
            payments = flows.Payments(rig.users, PMAuth(*rig.key), watch, rng)
            charges = _Charges(shop, rig.users, watch, rng)
            for n in range(rounds):
                for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                    await runs.quiet(rig.conn, rig.redis)
                    operation: flows.Operation = payments
                    if kind is CONFIRM:
                        operation = charges.confirming(await charges.pool(rig, pool))
                    elif kind is FULL:
                        operation = charges.with_request
                    phases[kind.name].append(await flows.measure(rig, kind, operation, size))
    return ChargesResult(
        concurrency=concurrency,
        warmup_s=warmup_s,
        seconds=seconds,
        orchestrators=orchestrators,
        users=users,
        pool=pool,
        p2p=phases[P2P],
        charges=phases[CONFIRM.name],
        full=phases[FULL.name],
    )


# --- the report ---------------------------------------------------------------------------------


def goals_met(result: ChargesResult) -> bool:
    return result.clean and result.ratio >= GOAL


def _caption(result: ChargesResult) -> str:
    return (
        "fleet: ledger-writer, orchestrators, reconciler and gateway as real processes with their "
        "default settings; the same PRE and POST fee rule on both types. A charge (the goal's): POST "
        "/v1/me/payment-requests/{id}/confirm (straight to the gateway with X-PM-User and the proxy "
        f"secret) → SETTLED, of payment requests made OPEN beforehand ({result.pool:,} per phase, in "
        f"bulk, untimed); with its request (no goal): POST {REQUESTS} (the merchant's key) first; a "
        f"P2P payment: signed POST {services.INTAKE} → SETTLED. Each worker starts its next flow when "
        f"its intent is terminal; {result.warmup_s:g} s warm-up, then {result.seconds:g} s measured: "
        "settled/s counts the flows that ended inside it; latency from the first request to the SETTLED "
        "row, of the flows started inside it. Phases rotate; each kind's best is compared. CPU ms per "
        "flow: each process's CPU over the phase's flows (from /proc; postgres: the run's backends)."
    )


def table(result: ChargesResult) -> Table:
    """Each phase: settled/s and latency; then charges/s ÷ P2P/s against the goal, and the charges with
    their requests ÷ P2P/s (no goal)."""
    figures = ["round", "flows", "settled/s", "p50", "p95", "p99", "confirm → SETTLED p50 / p99"]
    out = tables.table(
        f"Merchant charges beside P2P: settled/s, closed loop ({result.concurrency} concurrent flows, "
        f"{result.orchestrators} orchestrators, {result.users:,} wallets)",
        ["kind", *figures, "generator CPU", "CPU ms per flow", "failed / unfinished / errors"],
        right=[*figures, "generator CPU"],
        caption=_caption(result),
    )
    for found in (result.p2p, result.charges, result.full):
        for n, phase in enumerate(found, 1):
            confirm = phase.from_intake or (phase.run if phase.kind == CONFIRM.name else None)
            out.add_row(
                phase.kind,
                f"{n}",
                f"{phase.flows:,}",
                f"{phase.rate:,.0f}",
                flows.ms(phase.run.p50_ms),
                flows.ms(phase.run.p95_ms),
                flows.ms(phase.run.p99_ms),
                "" if confirm is None else f"{flows.ms(confirm.p50_ms)} / {flows.ms(confirm.p99_ms)}",
                f"{phase.generator_cpu:.0%} of a core",
                flows.cpu_cell(phase),
                phase.problems(),
                end_section=n == len(found),
            )
    verdict = tables.verdict(goals_met(result)) + ("" if result.clean else " (not clean: see the phases)")
    blank = [""] * 3
    out.add_row(
        "charges/s ÷ P2P/s", "best", "", f"{result.ratio:.1%}", *blank, f"goal ≥ {GOAL:.0%}", "", "", verdict
    )
    out.add_row(
        "with requests ÷ P2P/s", "best", "", f"{result.full_ratio:.1%}", *blank, "no goal", "", "", ""
    )
    return out


def stages_table(result: ChargesResult) -> Table:
    """Where the time goes in the best phase of each kind."""
    return tables.stages(
        "Merchant charges beside P2P: where the time goes (best phase of each, per settled intent)",
        "The first stage is the client's requests up to the intent's CREATED row: for a charge, the "
        "confirmation (and, with its request, the payment request before it). Means add up to the "
        "total; percentiles need not.",
        [(phase.kind, phase.run) for phase in (result.best_p2p, result.best_charge, result.best_full)],
    )


def report(result: ChargesResult, console: Console) -> bool:
    console.print(table(result))
    console.print(stages_table(result))
    return goals_met(result)


def _charge_row(result: ChargesResult) -> model.Benchmark:
    c = result.best_charge
    return msgspec.structs.replace(
        runs.benchmark(
            c.run,
            f"MINIAPP_CHARGE: payment-request confirm → SETTLED, {result.concurrency} concurrent",
        ),
        throughput=c.rate,
        baseline_name="P2P, same run, same concurrency",
        baseline=result.best_p2p.rate,
        ratio=result.ratio,
        goal=f"≥ {GOAL:.0%} of P2P",
        goal_met=goals_met(result),
        note=flows.notes(result.phases),
        extra=model.known(
            {
                **flows.rounds(result.charges),
                "OPEN payment requests per phase": float(result.pool),
                "ratio the CPU per flow predicts (%)": flows.percent(result.cpu_bound_ratio),
                **flows.cpu_extra(c),
                "generator CPU (cores)": c.generator_cpu,
            }
        ),
    )


def _full_row(result: ChargesResult) -> model.Benchmark:
    f = result.best_full
    confirm = f.from_intake
    return msgspec.structs.replace(
        runs.benchmark(
            f.run,
            f"MINIAPP_CHARGE with its request: payment request → confirm → SETTLED, {result.concurrency} "
            "concurrent (informational)",
        ),
        throughput=f.rate,
        baseline_name="P2P, same run, same concurrency",
        baseline=result.best_p2p.rate,
        ratio=result.full_ratio,
        extra=model.known(
            {
                **flows.rounds(result.full),
                "confirm → SETTLED p50 ms": None if confirm is None else confirm.p50_ms,
                "confirm → SETTLED p95 ms": None if confirm is None else confirm.p95_ms,
                "confirm → SETTLED p99 ms": None if confirm is None else confirm.p99_ms,
                "ratio the CPU per flow predicts (%)": flows.percent(result.full_cpu_bound_ratio),
                **flows.cpu_extra(f),
                "generator CPU (cores)": f.generator_cpu,
            }
        ),
    )


def section(result: ChargesResult) -> model.Section:
    """The figures for `pm bench`'s report: P2P, charges beside it (the goal's), and charges with
    their requests (no goal), each its best phase."""
    p = result.best_p2p
    p2p_row = msgspec.structs.replace(
        runs.benchmark(
            p.run, f"P2P: signed POST {services.INTAKE} → SETTLED, {result.concurrency} concurrent"
        ),
        throughput=p.rate,
        extra=model.known(
            {**flows.rounds(result.p2p), **flows.cpu_extra(p), "generator CPU (cores)": p.generator_cpu}
        ),
    )
    return model.Section(
        name="merchant charges",
        description=(
            "MINIAPP_CHARGE flows (the user's confirm of a payment request made OPEN beforehand, straight "
            "to the gateway as the front door sends it, until SETTLED) beside P2P flows (signed POST "
            f"{services.INTAKE} until SETTLED) on the saga's fleet, closed loop with "
            f"{result.concurrency} concurrent flows, {result.warmup_s:g} s warm-up then "
            f"{result.seconds:g} s per phase, phases rotating for {len(result.p2p)} rounds; the best "
            f"phase of each kind. Also, with no goal: charges with the merchant's POST {REQUESTS} "
            "inside the flow."
        ),
        benchmarks=[p2p_row, _charge_row(result), _full_row(result)],
        stages=[
            runs.stage_set(GROUP, phase.kind, phase.run)
            for phase in (p, result.best_charge, result.best_full)
        ],
        goals_met=goals_met(result),
    )
