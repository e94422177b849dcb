"""--tls-cert/--tls-key: the server speaks HTTPS and WSS itself, with a certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import OPERATOR, free_port


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "liveshop test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _wait_healthy(server, base: str, trust: ssl.SSLContext) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2, context=trust) as resp:
                assert json.loads(resp.read())["status"] == "ok"
                return
        except OSError:
            assert server.proc.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)


def _refused(port: int, base: str) -> None:
    """Plain HTTP on the TLS port gets no answer; an untrusting client refuses the certificate."""
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3)
        raise AssertionError("plain HTTP answered on the TLS port")
    except OSError:
        pass
    try:
        urllib.request.urlopen(base + "/healthz", timeout=3, context=ssl.create_default_context())
        raise AssertionError("an unknown certificate was accepted")
    except urllib.error.URLError as exc:
        assert isinstance(exc.reason, ssl.SSLCertVerificationError)


async def test_https_and_wss_with_a_made_certificate(server_proc, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    server = server_proc("--tls-cert", str(cert), "--tls-key", str(key), port=port, wait=False)
    trust = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    await asyncio.to_thread(_wait_healthy, server, base, trust)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as http:
        async with http.post(base + "/api/shows", json={"title": "tls"}, headers=OPERATOR) as resp:
            assert resp.status == 201
            body = await resp.json()
        show_id, host = body["show"]["id"], body["host_token"]
        async with http.ws_connect(
            f"wss://127.0.0.1:{port}/ws/{show_id}?token={host}", protocols=("liveshop.json",)
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    await asyncio.to_thread(_refused, port, base)


def test_tls_options_are_checked_at_start(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    cert, _ = make_certificate(tmp_path)
    for args, words in (
        (["--tls-cert", str(cert)], "go together"),
        (["--tls-cert", str(cert), "--tls-key", str(cert)], "cannot load"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "server", "--port", str(free_port()),
             "--data-dir", str(tmp_path / "d"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
