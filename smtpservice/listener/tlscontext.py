"""Server-side TLS contexts for the SMTP ports, built from TLS credentials documents.

TLS 1.2 or later with AEAD cipher suites only (TLS 1.3 suites are all AEAD; RFC 8996, RFC 9325 s 4),
no compression (CRIME) and no renegotiation (a client could make the server redo handshakes at will).
``ssl`` loads keys only from files, so the PEM text goes through a private temporary directory that is
removed at once.
"""
import os
import ssl
import tempfile

AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"


def server_context(certificate_pem: str, private_key_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(AEAD_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory(prefix="smtp-tls-") as directory:
        certificate_path = os.path.join(directory, "certificate.pem")
        key_path = os.path.join(directory, "key.pem")
        for path, text in ((certificate_path, certificate_pem), (key_path, private_key_pem)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        context.load_cert_chain(certificate_path, key_path)
    return context
