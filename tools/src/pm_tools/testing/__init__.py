"""PM's test kit: pytest fixtures for real Redis and PostgreSQL, and helpers for process tests."""

from __future__ import annotations
