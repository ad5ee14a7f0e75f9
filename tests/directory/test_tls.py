"""TLS credentials: the PEM checks on save, host name coverage, and the self-signed certificate action."""
import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from directory import tls
from directory.models import Server, TLSCredentials
from tests.directory.documents import bound_form, make_credentials, make_server

NOW = datetime.datetime.now(datetime.UTC)


def key_pem(key, password=None):
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def certificate(
    common_name, *, key=None, dns_names=(), ip_addresses=(), issuer=None, ca=False,
    not_before=NOW - datetime.timedelta(days=1), not_after=NOW + datetime.timedelta(days=90),
):
    """A certificate and its key; ``issuer`` is the (certificate, key) that signs it, else it signs itself."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_certificate, issuer_key = issuer or (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_certificate.subject if issuer_certificate else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    alt_names = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem(*certificates):
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


@pytest.fixture(scope="module")
def chain():
    """A root CA, an intermediate CA it signs, and a leaf for mail1.acme.test the intermediate signs."""
    root = certificate("Acme Root CA", ca=True)
    intermediate = certificate("Acme Issuing CA", ca=True, issuer=root)
    leaf = certificate("mail1.acme.test", dns_names=["mail1.acme.test"], issuer=intermediate)
    return root, intermediate, leaf


def credential_error(certificate_pem, private_key_pem):
    with pytest.raises(tls.CredentialError) as raised:
        tls.inspect(certificate_pem, private_key_pem)
    return raised.value.field, raised.value.code


def test_a_matching_key_is_accepted_and_the_certificate_described():
    cert, key = certificate("mail1.acme.test", dns_names=["mail1.acme.test", "smtp.acme.test"], ip_addresses=["192.0.2.25"])
    info = tls.inspect(pem(cert), key_pem(key))
    assert info.subject == "CN=mail1.acme.test"
    assert info.host_names == ("mail1.acme.test", "smtp.acme.test", "192.0.2.25")
    assert info.not_after == cert.not_valid_after_utc
    assert not info.expired


def test_an_rsa_key_is_accepted_too():
    cert, key = certificate("mail1.acme.test", key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert tls.inspect(pem(cert), key_pem(key)).host_names == ("mail1.acme.test",)


def test_without_alternative_names_the_common_name_is_the_host_name():
    cert, key = certificate("legacy.acme.test")
    assert tls.inspect(pem(cert), key_pem(key)).host_names == ("legacy.acme.test",)


def test_a_key_of_another_certificate_is_refused():
    cert, _key = certificate("mail1.acme.test")
    _other, other_key = certificate("mail1.acme.test")
    assert credential_error(pem(cert), key_pem(other_key)) == ("private_key_pem", "key_mismatch")


def test_an_encrypted_key_is_refused():
    cert, key = certificate("mail1.acme.test")
    assert credential_error(pem(cert), key_pem(key, password=b"passphrase")) == ("private_key_pem", "encrypted_key")


@pytest.mark.parametrize(
    "garbage",
    ["", "not a key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"],
)
def test_a_garbage_key_is_refused(garbage):
    cert, _key = certificate("mail1.acme.test")
    assert credential_error(pem(cert), garbage) == ("private_key_pem", "invalid_key")


def test_a_certificate_pasted_as_the_key_is_refused():
    cert, _key = certificate("mail1.acme.test")
    assert credential_error(pem(cert), pem(cert)) == ("private_key_pem", "invalid_key")


@pytest.mark.parametrize(
    "garbage",
    ["", "hello", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"],
)
def test_a_garbage_certificate_is_refused(garbage):
    _cert, key = certificate("mail1.acme.test")
    assert credential_error(garbage, key_pem(key)) == ("certificate_pem", "invalid_certificate")


def test_a_chain_with_an_intermediate_is_described_by_its_leaf(chain):
    _root, intermediate, (leaf, leaf_key) = chain
    info = tls.inspect(pem(leaf, intermediate[0]), key_pem(leaf_key))
    assert info.subject == "CN=mail1.acme.test"
    assert info.host_names == ("mail1.acme.test",)


def test_a_chain_must_start_with_the_certificate_of_the_key(chain):
    _root, intermediate, (leaf, leaf_key) = chain
    assert credential_error(pem(intermediate[0], leaf), key_pem(leaf_key)) == ("private_key_pem", "key_mismatch")


def test_a_chain_is_saved_whole(db, chain):
    _root, intermediate, (leaf, leaf_key) = chain
    form = bound_form(
        TLSCredentials, name="mail1-cert", certificate_pem=pem(leaf, intermediate[0]), private_key_pem=key_pem(leaf_key)
    )
    assert form.is_valid(), form.errors
    saved = form.save()
    assert len(x509.load_pem_x509_certificates(saved.certificate_pem.encode())) == 2
    assert saved.host_names == ["mail1.acme.test"]
    assert saved.subject == "CN=mail1.acme.test"


def test_an_expired_certificate_is_refused_on_the_certificate_field(db):
    expired_on = NOW - datetime.timedelta(days=3)
    cert, key = certificate("mail1.acme.test", not_before=NOW - datetime.timedelta(days=100), not_after=expired_on)
    assert tls.inspect(pem(cert), key_pem(key)).expired
    form = bound_form(TLSCredentials, name="old-cert", certificate_pem=pem(cert), private_key_pem=key_pem(key))
    assert not form.is_valid()
    (error,) = form.errors.as_data()["certificate_pem"]
    assert error.code == "expired"
    assert str(expired_on.date()) in form.errors["certificate_pem"][0]
    assert not TLSCredentials.objects.exists()


@pytest.mark.parametrize(
    ("field", "certificate_pem", "private_key_pem", "code"),
    [
        ("certificate_pem", "garbage", None, "invalid_certificate"),
        ("private_key_pem", None, "garbage", "invalid_key"),
        ("private_key_pem", None, "other", "key_mismatch"),
        ("private_key_pem", None, "encrypted", "encrypted_key"),
    ],
)
def test_the_form_names_the_field_in_error(db, field, certificate_pem, private_key_pem, code):
    cert, key = certificate("mail1.acme.test")
    keys = {
        None: key_pem(key),
        "garbage": "garbage",
        "other": key_pem(ec.generate_private_key(ec.SECP256R1())),
        "encrypted": key_pem(key, password=b"secret"),
    }
    form = bound_form(
        TLSCredentials, name="cert", certificate_pem=certificate_pem or pem(cert), private_key_pem=keys[private_key_pem]
    )
    assert not form.is_valid()
    assert [error.code for error in form.errors.as_data()[field]] == [code]


def test_a_certificate_expiring_soon_is_saved_with_a_warning(db):
    cert, key = certificate("mail1.acme.test", not_after=NOW + datetime.timedelta(days=10))
    form = bound_form(TLSCredentials, name="soon", certificate_pem=pem(cert), private_key_pem=key_pem(key))
    assert form.is_valid()
    assert [(field, code) for field, code, _message in form.warnings] == [("certificate_pem", "expires_soon")]


@pytest.mark.parametrize(
    ("host_names", "host_name", "covered"),
    [
        (["mail1.acme.test"], "mail1.acme.test", True),
        (["mail1.acme.test"], "MAIL1.Acme.Test", True),
        (["MAIL1.ACME.TEST"], "mail1.acme.test.", True),
        (["mail1.acme.test"], "mail2.acme.test", False),
        (["mail1.acme.test", "smtp.acme.test"], "smtp.acme.test", True),
        (["*.acme.test"], "mail1.acme.test", True),
        (["*.acme.test"], "MAIL1.ACME.TEST", True),
        (["*.acme.test"], "acme.test", False),
        (["*.acme.test"], "a.mail1.acme.test", False),
        (["*.acme.test"], "mail1.acme.example", False),
        (["*.mail.acme.test"], "mail1.acme.test", False),
        (["192.0.2.25"], "192.0.2.25", True),
        (["192.0.2.25"], "192.0.2.26", False),
        ([], "mail1.acme.test", False),
    ],
)
def test_host_name_coverage(host_names, host_name, covered):
    assert tls.covers(host_names, host_name) is covered


def test_a_wildcard_certificate_covers_a_server(db):
    cert, key = certificate("*.acme.test", dns_names=["*.acme.test"])
    form = bound_form(TLSCredentials, name="wildcard", certificate_pem=pem(cert), private_key_pem=key_pem(key))
    assert form.is_valid(), form.errors
    form.save()
    server = make_server(host_name="mail1.acme.test", tls_credentials="wildcard")
    assert server.tls_credentials.covers("mail1.acme.test")
    assert not bound_form(Server, name="mail2/Acme", host_name="acme.test", tls_credentials="wildcard").is_valid()


def test_replacing_a_certificate_by_one_that_no_longer_covers_its_server_is_refused(db):
    credentials = make_credentials("mail1-cert", "mail1.acme.test")
    make_server(host_name="mail1.acme.test", tls_credentials="mail1-cert")
    other_pem, other_key = tls.generate_self_signed("other.acme.test")
    form = bound_form(TLSCredentials, credentials, certificate_pem=other_pem, private_key_pem=other_key)
    assert not form.is_valid()
    assert [error.code for error in form.errors.as_data()["certificate_pem"]] == ["host_not_covered"]
    assert "mail1.acme.test" in form.errors["certificate_pem"][0]


def test_generate_self_signed_makes_working_credentials_for_the_host():
    certificate_pem, private_key_pem = tls.generate_self_signed(
        "mail1.acme.test", days=30, extra_names=["smtp.acme.test", "192.0.2.25"]
    )
    info = tls.inspect(certificate_pem, private_key_pem)
    now = datetime.datetime.now(datetime.UTC)
    assert info.subject == "CN=mail1.acme.test"
    assert info.host_names == ("mail1.acme.test", "smtp.acme.test", "192.0.2.25")
    assert tls.covers(info.host_names, "mail1.acme.test")
    assert datetime.timedelta(days=29) < info.not_after - now <= datetime.timedelta(days=30, minutes=1)
    assert info.not_before <= datetime.datetime.now(datetime.UTC)
    cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.25")]
    assert "ENCRYPTED" not in private_key_pem


def test_generate_self_signed_gives_a_new_key_each_time():
    assert tls.generate_self_signed("mail1.acme.test")[1] != tls.generate_self_signed("mail1.acme.test")[1]


def test_generated_credentials_save_and_show_their_expiry(db):
    credentials = make_credentials("mail1-cert", "mail1.acme.test", days=397)
    now = datetime.datetime.now(datetime.UTC)
    assert credentials.host_names == ["mail1.acme.test"]
    assert datetime.timedelta(days=396) < credentials.not_after - now <= datetime.timedelta(days=397, minutes=1)
    assert not credentials.expires_soon()
    assert credentials.warnings() == []
