"""Mailbox sources: Maildir (the embedded default) and IMAP, behind one interface."""

from mailbridge.mailbox.base import Destination, InboundMail, MailboxSource

__all__ = ["Destination", "InboundMail", "MailboxSource"]
