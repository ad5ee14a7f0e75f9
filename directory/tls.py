"""TLS credentials: read and check a PEM chain and key, and make a self-signed certificate.

Everything here uses ``cryptography``; nothing touches the database.
"""
from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django.utils.functional import Promise


class CredentialError(Exception):
    """A problem with the PEM input, tied to the form field it concerns."""

    def __init__(self, field: str, code: str, message: str | Promise) -> None:
        super().__init__(message)
        self.field, self.code, self.message = field, code, message


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    host_names: tuple
    not_before: datetime.datetime
    not_after: datetime.datetime

    @property
    def expired(self) -> bool:
        return self.not_after < datetime.datetime.now(datetime.UTC)


def load_chain(certificate_pem: str) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(certificate_pem.encode())
    except ValueError:
        raise CredentialError(
            "certificate_pem", "invalid_certificate", _("This is not a PEM certificate chain (-----BEGIN CERTIFICATE-----).")
        ) from None
    return chain


def load_key(private_key_pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except TypeError:
        raise CredentialError(
            "private_key_pem", "encrypted_key", _("This private key is encrypted; paste it without a passphrase.")
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(
            "private_key_pem", "invalid_key", _("This is not a PEM private key (-----BEGIN PRIVATE KEY-----).")
        ) from None


def inspect(certificate_pem: str | None, private_key_pem: str | None) -> CertificateInfo:
    """Check that the chain parses, the key parses and matches the first certificate; describe it."""
    chain = load_chain(certificate_pem or "")
    key = load_key(private_key_pem or "")
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, public
    ):
        raise CredentialError(
            "private_key_pem", "key_mismatch", _("This private key does not belong to the first certificate of the chain.")
        )
    return describe(leaf)


def describe(certificate: x509.Certificate) -> CertificateInfo:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        hosts = [attr.value for attr in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return CertificateInfo(
        subject=certificate.subject.rfc4514_string(),
        host_names=tuple(hosts),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def covers(host_names: Iterable[str], host_name: str) -> bool:
    """Does a certificate for ``host_names`` cover ``host_name``? ``*.acme.test`` covers one label."""
    wanted = host_name.lower().rstrip(".")
    for pattern in host_names:
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def generate_self_signed(host_name: str, days: int = 397, extra_names: Iterable[str] = ()) -> tuple[str, str]:
    """A self-signed certificate and key (PEM text) for ``host_name``, valid from now for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)])
    alt_names = [x509.DNSName(host_name)]
    for name in extra_names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate_pem, key_pem

