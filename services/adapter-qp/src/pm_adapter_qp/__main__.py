from pm_adapter_qp.main import run

run()
