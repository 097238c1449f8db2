"""pm-gateway: the HTTP front door of PM."""
