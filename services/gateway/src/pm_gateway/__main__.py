from pm_gateway.main import run

run()
