"""A virus scanner for tests, answering as clamdscan does: it finds the EICAR test string.

    eicar_scanner.py FILE   (or the bytes on standard input)
Exit 0 and "FILE: OK" when clean, 1 and "FILE: Eicar-Test-Signature FOUND" when infected,
2 when the file cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "stream"
    try:
        data = Path(argv[1]).read_bytes() if len(argv) > 1 else sys.stdin.buffer.read()
    except OSError as exc:
        print(f"{name}: {exc.strerror} ERROR", file=sys.stderr)
        return 2
    if EICAR in data:
        print(f"{name}: Eicar-Test-Signature FOUND")
        return 1
    print(f"{name}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
