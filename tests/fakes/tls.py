"""A throwaway certificate authority for tests, made with the openssl command line tool.

Real parts in tests speak real TLS: the CA signs a certificate for 127.0.0.1, the server presents
it, and the client verifies it against the CA, exactly as in production.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SERVER_EXTENSIONS = """\
subjectAltName = {names}
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
"""


@dataclass(frozen=True)
class TestCA:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_ca(
    directory: Path,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    common_name: str = "127.0.0.1",
    days: int = 2,
) -> TestCA:
    """A CA and a server certificate for 127.0.0.1/localhost, valid for `days` (two) days.

    `dns_names` adds host names to the certificate (always besides localhost), for a server that
    clients may also reach by its own name, such as a domain controller's DC1.school.test;
    `ip_addresses` replaces the loopback address. Both private keys are written with mode 0600
    (Samba refuses a key that others can read).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command is needed for TLS tests (Debian: apt-get install openssl)"
        )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    names = [f"IP:{ip}" for ip in ip_addresses]
    names += [f"DNS:{name}" for name in dict.fromkeys([*dns_names, "localhost"])]
    (directory / "server.ext").write_text(_SERVER_EXTENSIONS.format(names=", ".join(names)))
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        str(days),
        "-subj",
        "/CN=provisioner test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        f"/CN={common_name}",
    )
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        str(days),
        "-extfile",
        "server.ext",
    )
    for key in ("ca.key", "server.key"):
        (directory / key).chmod(0o600)
    return TestCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
