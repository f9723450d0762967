"""Shared fixtures. Server fixtures live in tests/servers/ as plugins, one per server."""

pytest_plugins = [
    "tests.servers.dovecot",
    "tests.servers.smtp",
    "tests.servers.database",
]
