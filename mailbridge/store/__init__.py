"""What mailbridge keeps: the database (engines, sessions, tables, migrations) and the blob
store of raw mail and attachments, and consistent backups of both.

Imports nothing of mailbridge but config, errors and logs: every other room builds on it.
"""
