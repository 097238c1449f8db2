"""Root conftest: registers PM's pytest plugin (fixtures for real Redis and PostgreSQL)."""

pytest_plugins = ["pm_shared.testing.fixtures", "pm_shared.testing.db", "pm_shared.testing.fleet"]
