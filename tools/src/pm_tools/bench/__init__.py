"""`pm bench`: every benchmark beside a baseline measured in the same run, and its report.

The benchmarks: `streams` (the streams runtime beside raw redis-py), `ledger` (the embedded engine,
bare and through the ledger-writer), `gateway` (signed intake beside `bare_app`), `saga` (the fleet
end to end), `psp` (PromptPay withdrawals beside P2P), `charges` (merchant charges beside P2P) and
`front_door` (end users' requests through nginx beside direct). What they share: `harness`
(processes, throw-away databases, percentiles, CPU time), `services`, `workload`, `offer` and `runs`
(the fleet of the saga, PSP and charge runs, their intents, open-loop load and figures), `closed`
(closed-loop load), `merchant` (a merchant, its payment requests, `/v1/me` as nginx sends it),
`queries` and `tables`. `suite` runs them for `pm bench`; `model` holds what they measured, `report`
writes it out.
"""
