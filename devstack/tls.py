"""A local certificate authority and a loopback server certificate for the emulators.

Microsoft's client libraries insist on HTTPS (MSAL refuses http authorities; the Key Vault client
refuses http vaults), so the emulators serve TLS with a certificate issued by a CA made on this
machine. Clients are pointed at the CA file explicitly (the BB_CA_BUNDLE setting); nothing is
installed into the system trust store. Keys and certificates live under `.devstack/` and are never
committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=825)  # well inside what TLS clients accept for a leaf
_RENEW_BEFORE = dt.timedelta(days=30)


def trust_command(ca_cert: Path, platform: str = sys.platform) -> str:
    """The one command that makes this machine's browsers trust the local CA (for the emulator's
    sign-in page): Chromium/Chrome's NSS store on Linux, the login keychain on macOS, the user's
    root store on Windows. Nothing runs it for you: trusting a CA is the user's decision."""
    if platform == "darwin":
        return (
            f"security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db "
            f"{ca_cert}"
        )
    if platform.startswith("win"):
        return f"certutil -user -addstore Root {ca_cert}"
    return f'certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n "BookingBridge local CA" -i {ca_cert}'


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def ensure_tls(directory: Path) -> TlsFiles:
    """Create (once) a CA and a server certificate for 127.0.0.1/localhost under `directory`.

    Idempotent: existing, still-valid files are reused so a running stack keeps working and
    repeated `make run`s are fast.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    if all(p.exists() for p in (files.ca_cert, files.server_cert, files.server_key)) and _valid(
        files.server_cert
    ):
        return files

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BookingBridge local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    _write(
        files.server_key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    # The CA key is not kept: nothing else is ever signed with it, so it cannot be misused later.
    return files


def _valid(cert_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > _RENEW_BEFORE


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
