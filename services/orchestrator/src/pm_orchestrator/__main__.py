from pm_orchestrator.main import run

run()
