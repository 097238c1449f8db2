from pm_gateway.testing import gateway

__all__ = ["gateway"]
