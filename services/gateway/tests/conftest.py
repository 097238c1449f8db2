from pm_tools.testing.gateway import gateway

__all__ = ["gateway"]
