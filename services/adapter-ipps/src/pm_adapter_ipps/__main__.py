from pm_adapter_ipps.main import run

run()
