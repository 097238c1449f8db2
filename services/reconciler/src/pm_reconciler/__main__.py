from pm_reconciler.main import run

run()
