"""Root conftest: registers PM's pytest plugin (fixtures for real Redis and PostgreSQL)."""

pytest_plugins = ["pm_tools.testing.fixtures", "pm_tools.testing.db", "pm_tools.testing.fleet"]
