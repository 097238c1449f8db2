"""`pm bench`: every benchmark beside a baseline measured in the same run, and its report.

The benchmarks: `streams` (the streams runtime beside raw redis-py), `ledger` (the embedded engine,
bare and through the ledger-writer), `gateway` (signed intake beside `bare_app`), `saga` (the fleet
end to end) and `psp` (PromptPay withdrawals beside P2P). What they share: `harness` (processes,
throw-away databases, percentiles), `services`, `workload`, `offer` and `runs` (the fleet of the saga
and PSP runs, their intents, open-loop load and figures), `queries` and `tables`. `suite` runs them
for `pm bench`; `model` holds what they measured, `report` writes it out.
"""
