"""Outgoing mail: queueing it in the caller's transaction (every protection in one place),
composing it as bytes, its templates, the transactional outbox, the courier process that
delivers it, receipts, and the transports (SMTP, Maildir).

May import store, mail and mailbox's OAuth; cases queue mail through it.
"""
