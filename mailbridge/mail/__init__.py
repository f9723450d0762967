"""What an email says, as pure functions of its bytes and text: parsing (bytes to a
ParsedEmail, never raising), hygiene (loops, bounces, auto-replies), replies (the new text
and its keywords) and subjects (case tags and reply prefixes).

No database, no clock, no network: the pipeline reads incoming mail with these, cases and
delivery use their types. Imports nothing of mailbridge's rooms.
"""
