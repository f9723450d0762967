"""Where outgoing mail goes: an SMTP server (smtp.py) or a local Maildir folder (maildir.py),
behind the one `Sender` interface in base.py; factory.py builds the configured one and
imports smtp.py only then, so only the process that delivers imports aiosmtplib."""
