"""Emails built in code for the bounds tests: shapes no fixture file should have to hold."""

from __future__ import annotations


def many_parts(count: int, *, sender: str = "cllr.jane.smith@example.gov.uk") -> bytes:
    """An email of `count` attachments all called image.png: small, and built to stall."""
    part = (
        b"--b\r\nContent-Type: image/png\r\n"
        b'Content-Disposition: attachment; filename="image.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
    )
    head = (
        f"From: {sender}\r\nTo: enquiries@example.gov.uk\r\nSubject: Pictures\r\n"
        f"Message-ID: <parts-{count}@example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the photos.\r\n"
    ).encode()
    return head + part * count + b"--b--\r\n"


def large_attachment(
    size: int, n: int = 1, *, sender: str = "cllr.jane.smith@example.gov.uk"
) -> bytes:
    """An enquiry of about `size` bytes, nearly all of it one base64 attachment."""
    head = (
        f"From: {sender}\r\nTo: enquiries@example.gov.uk\r\nSubject: Survey photos {n}\r\n"
        f"Message-ID: <large-{n}-{size}@example.org>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe survey photos are attached.\r\n"
        "--b\r\nContent-Type: application/zip\r\n"
        'Content-Disposition: attachment; filename="photos.zip"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    line = b"UEsDBBQAAAAIAAAAIQDd" * 3 + b"UEsDBBQAAAAI\r\n"  # 72 characters and CRLF
    return head + line * max(1, (size - len(head)) // len(line)) + b"--b--\r\n"
