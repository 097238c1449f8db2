"""The `pm` command-line tool."""
