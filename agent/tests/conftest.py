"""The agent's tests check what the agent sends against the protocol schema itself."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import secrets
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import websockets
import websockets.asyncio.server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from websockets.asyncio.server import ServerConnection

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "openapi" / "agent-protocol.json"

Validate = Callable[[str, Any], None]


@pytest.fixture(scope="session")
def validate() -> Validate:
    """``validate(definition, value)``: raise unless ``value`` is a valid ``definition``."""
    definitions = json.loads(SCHEMA_FILE.read_text())["definitions"]

    def check(definition: str, value: Any) -> None:
        jsonschema.validate(
            value,
            {"definitions": definitions, "$ref": f"#/definitions/{definition}"},
            cls=jsonschema.Draft7Validator,
        )

    return check


# ---------------------------------------------------------------------------
# Remote control: a gateway speaking the agent protocol, and real agent processes.


@dataclass
class Tls:
    ca_pem: bytes
    server: ssl.SSLContext


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a certificate for 127.0.0.1 signed by it (what the agent pins)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return Tls(ca.public_bytes(serialization.Encoding.PEM), server)


NODE_ID = "n_test0000000001"
CREDENTIAL = "smn1.n_test0000000001.secretsecretsecretsecretsecretsecret"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Gateway:
    """A gateway speaking the agent protocol: welcomes, acks heartbeats, sends orders.

    ``messages`` holds every message the agent sent (all connections), in order.
    Reports are acknowledged (``result_ack`` per report) while ``ack_reports`` is true.
    """

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.messages: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.ack_reports = True
        # Seconds the gateway spends on each report (a slow or busy core).
        self.report_delay = 0.0
        self.connections = 0
        self.interval = 1.0
        self._ws: ServerConnection | None = None
        self._changed = asyncio.Event()
        self.url = ""

    # -- orders

    def order(self, kind: str, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
        now = time.time()
        order: dict[str, Any] = {
            "v": 1,
            "execution_id": "x_" + secrets.token_hex(8),
            "command_id": "c_" + secrets.token_hex(8),
            "node_id": NODE_ID,
            "kind": kind,
            "issued_at": now,
            "expires_at": now + 3600,
            "timeout": 30,
            kind: spec,
        }
        order.update(fields)
        return order

    def execute_message(
        self, order: dict[str, Any], *, key: Ed25519PrivateKey | None = None
    ) -> dict[str, Any]:
        text = json.dumps(order, sort_keys=True, separators=(",", ":"))
        signature = b64url((key or self.key).sign(text.encode()))
        return {
            "v": 1,
            "type": "execute",
            "execution_id": order["execution_id"],
            "order": text,
            "signature": signature,
        }

    async def send(self, message: dict[str, Any]) -> None:
        await self.wait_connected()
        assert self._ws is not None
        await self._ws.send(json.dumps(message))

    async def execute(self, order: dict[str, Any], **kwargs: Any) -> str:
        await self.send(self.execute_message(order, **kwargs))
        return str(order["execution_id"])

    async def cancel(self, execution_id: str) -> None:
        await self.send({"v": 1, "type": "cancel", "execution_id": execution_id})

    async def result_ack(self, execution_id: str, upto: int) -> None:
        await self.send({"v": 1, "type": "result_ack", "execution_id": execution_id, "upto": upto})

    # -- what arrived

    def reports(self, execution_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("execution_id") == execution_id]

    def heartbeats(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "heartbeat"]

    async def wait(self, check: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            found = check()
            if found:
                return found
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not reached in {within} s: {what}"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def final(self, execution_id: str, within: float = 15.0) -> dict[str, Any]:
        """The execution's last report (finished or refused)."""

        def last() -> dict[str, Any] | None:
            for report in self.reports(execution_id):
                if report["type"] in ("finished", "refused"):
                    return report
            return None

        found: dict[str, Any] = await self.wait(last, within, f"the end of {execution_id}")
        return found

    def output(self, execution_id: str, stream: str = "stdout") -> bytes:
        """The stream's kept output, put together by offset (duplicates overwrite alike)."""
        chunks = {
            m["offset"]: base64.b64decode(m["data"])
            for m in self.reports(execution_id)
            if m["type"] == "output" and m["stream"] == stream
        }
        data = b""
        for offset in sorted(chunks):
            assert offset <= len(data), "a gap in the output"
            data = data[:offset] + chunks[offset]
        return data

    async def wait_connected(self) -> None:
        await self.wait(lambda: self._ws is not None, 20.0, "the agent connected")

    @property
    def connected(self) -> bool:
        """Whether an agent's connection is held (it ends after the agent's process exits)."""
        return self._ws is not None

    async def drop(self) -> None:
        if self._ws is not None:
            await self._ws.close(1001, "going away")
            self._ws = None

    # -- the connection

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.headers.get("Authorization") != f"Bearer {CREDENTIAL}":
            await ws.close(1008, "bad credential")
            return
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await ws.send(
            json.dumps(
                {
                    "v": 1,
                    "type": "welcome",
                    "node_id": NODE_ID,
                    "heartbeat_interval": self.interval,
                    "backlog_rate": 50,
                }
            )
        )
        self.connections += 1
        self._ws = ws
        heartbeats = 0
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.messages.append(message)
                self.arrivals.append(time.monotonic())
                if message["type"] == "heartbeat":
                    heartbeats += 1
                    await ws.send(json.dumps({"v": 1, "type": "ack", "upto": heartbeats}))
                elif message["type"] in ("started", "output", "finished", "refused"):
                    if self.report_delay:
                        await asyncio.sleep(self.report_delay)
                    if self.ack_reports:
                        await ws.send(
                            json.dumps(
                                {
                                    "v": 1,
                                    "type": "result_ack",
                                    "execution_id": message["execution_id"],
                                    "upto": message["seq"],
                                }
                            )
                        )
                self._changed.set()
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self._changed.set()


@pytest.fixture
async def gateway(tls: Tls) -> AsyncIterator[Gateway]:
    gw = Gateway(Ed25519PrivateKey.generate())
    async with websockets.asyncio.server.serve(
        gw.handler, "127.0.0.1", 0, ssl=tls.server
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        gw.url = f"wss://127.0.0.1:{port}/agent/ws"
        yield gw


class Agent:
    """A real ``sm-agent run`` process with its own state directory."""

    def __init__(self, root: Path, gateway: Gateway, tls: Tls) -> None:
        self.root = root
        self.state = root / "state"
        self.gateway = gateway
        self.settings: dict[str, Any] = {}
        self.env: dict[str, str] = {}
        self.process: asyncio.subprocess.Process | None = None
        self.log = root / "agent.log"
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        public = gateway.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        (self.state / "credential").write_text(CREDENTIAL + "\n")
        (self.state / "ca.pem").write_bytes(tls.ca_pem)
        (self.state / "node.json").write_text(
            json.dumps(
                {
                    "node_id": NODE_ID,
                    "command_public_key": b64url(public),
                    "gateway_url": gateway.url,
                    "server": "https://127.0.0.1:1",
                    "heartbeat_interval": 1.0,
                }
            )
        )

    async def start(self, **settings: Any) -> Agent:
        self.settings.update(settings)
        config = self.root / "agent.toml"
        config.write_text(
            "".join(f"{key} = {json.dumps(value)}\n" for key, value in self.settings.items())
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_AGENT_")}
        env.update(self.env)
        with open(self.log, "ab") as log:  # noqa: ASYNC230 (a local file, once)
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sm_agent",
                "run",
                "--config",
                str(config),
                "--state-dir",
                str(self.state),
                "--gateway-url",
                self.gateway.url,
                "--log-level",
                "DEBUG",
                stdout=log,
                stderr=log,
                env=env,
            )
        return self

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), 20)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
async def agent(tmp_path: Path, gateway: Gateway, tls: Tls) -> AsyncIterator[Agent]:
    """A real agent (not started: ``await agent.start(**settings)``), stopped after the test."""
    process = Agent(tmp_path, gateway, tls)
    yield process
    if process.process is not None and process.process.returncode is None:
        process.process.kill()
        await process.process.wait()
