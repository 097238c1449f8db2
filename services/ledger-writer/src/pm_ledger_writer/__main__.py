from pm_ledger_writer.main import run

run()
