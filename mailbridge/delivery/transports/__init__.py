"""Where outgoing mail goes: an SMTP server (smtp.py, imported only by the courier) or a
local Maildir folder, behind the one `Sender` interface in base.py."""
