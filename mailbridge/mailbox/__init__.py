"""Where mail comes from: Maildir (the embedded default) and IMAP sources behind one
interface (base.py), built from `[mailbox]` (factory.py), with the IMAP UID mark (state.py)
and logging in to a mail server (login.py, oauth.py), which delivery's SMTP sender shares.

Transport only, no decisions: imports the foundation and store, nothing above them.
"""
