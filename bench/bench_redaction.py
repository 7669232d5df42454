"""Benchmark: log redaction with the secrets of a first night registered.

    python -m bench.bench_redaction [--secrets 1 5000 20000] [--lines 10000]

Every initial password is registered as a secret before it is set, so on a first night of a large
school every log line is checked against thousands of secrets in all their forms (raw,
URL-encoded, character references, JSON escapes). Per count of secrets: the time to register
them, and the time per line for a 200-character line without and with encoded text.
"""

from __future__ import annotations

import argparse
import time

from provisioner import log
from provisioner.passwords import PasswordConfig, generate

PLAIN = "WARNING: skipped: create 1234567: changed in the directory since the plan: sn Peeters " * 2
ENCODED = "HTTP 500: Invalid request /wsInformat.asmx/Lln?login=a%40b.be&amp;paswoord=x%21y " * 2


def per_line(line: str, lines: int) -> float:
    start = time.perf_counter()
    for _ in range(lines):
        log.redact(line)
    return (time.perf_counter() - start) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, nargs="+", default=[1, 5000, 20000])
    parser.add_argument("--lines", type=int, default=10000)
    args = parser.parse_args()
    print("| secrets | register, total | plain line | line with encoded text |")
    print("|---:|---:|---:|---:|")
    registered = 0
    for count in args.secrets:
        passwords = [generate(PasswordConfig()) for _ in range(count - registered)]
        start = time.perf_counter()
        for password in passwords:
            log.register_secret(password)
        took = time.perf_counter() - start
        registered = count
        print(
            f"| {count:,} | {took * 1e3:.1f} ms | {per_line(PLAIN, args.lines) * 1e6:.1f} µs "
            f"| {per_line(ENCODED, args.lines) * 1e6:.1f} µs |"
        )


if __name__ == "__main__":
    main()
