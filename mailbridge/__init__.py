"""mailbridge: email-first case management for council member enquiries."""

__version__ = "0.1.0"
