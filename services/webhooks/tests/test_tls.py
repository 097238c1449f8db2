"""https endpoints: the sender connects to the address it checked, yet checks the server's certificate
against the URL's host, which it also sends as the TLS server name and in `Host` (docs/webhooks.md)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from pm_tools.testing import webhooks as kit
from pm_webhooks.addresses import Target
from pm_webhooks.sender import Message, Sender

NAME = "merchant.pm-test.invalid"
"""The merchant's host name: the certificate's only name (the test never resolves it)."""


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for NAME and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
async def tls(tmp_path: Path) -> AsyncIterator[tuple[kit.Receiver, Sender]]:
    """An https receiver on 127.0.0.1 presenting NAME's certificate, and a sender trusting it."""
    cert_file, key_file = certificate(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    async with (
        kit.Receiver(ssl=server) as receiver,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client)) as session,
    ):
        yield receiver, Sender(session, (), timeout_s=10)


def message(receiver: kit.Receiver) -> Message:
    return Message(f"https://{NAME}:{receiver.port}/hook", "msg_tls", b'{"type":"ping"}', [b"k" * 32])


async def test_the_certificate_is_checked_against_the_urls_host(
    tls: tuple[kit.Receiver, Sender],
) -> None:
    receiver, sender = tls
    target = Target(URL(f"https://127.0.0.1:{receiver.port}/hook"), f"{NAME}:{receiver.port}", NAME)
    outcome = await sender.post(target, message(receiver))
    assert outcome.ok and outcome.status_code == 200
    [got] = receiver.received
    assert got.headers["host"] == f"{NAME}:{receiver.port}" and got.webhook_id == "msg_tls"


async def test_a_certificate_for_another_host_is_refused(tls: tuple[kit.Receiver, Sender]) -> None:
    receiver, sender = tls
    target = Target(
        URL(f"https://127.0.0.1:{receiver.port}/hook"), "other.pm-test.invalid", "other.pm-test.invalid"
    )
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await sender.post(target, message(receiver))
    assert receiver.received == []
