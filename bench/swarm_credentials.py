"""Node credentials for the swarm: enrolled for real once, then kept in a state file.

Each simulated node enrolls through ``POST /api/v1/enroll`` with the
enrollment key, over TLS verified with the data directory's CA, exactly as
an agent does. Enrolling thousands of nodes takes ~5 ms each, so the
credentials are kept in ``<data dir>/swarm-credentials.json`` (beside the
registry database they belong to) and a rerun only enrolls the nodes it is
missing.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from swarm_sample import facts

from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir

STATE_FILE = "swarm-credentials.json"
CONCURRENCY = 8


@dataclass(frozen=True)
class Credential:
    index: int
    node_id: str
    credential: str


def client_tls(data: DataDir) -> ssl.SSLContext:
    """One client context for every connection: verifies the core with the data dir's CA."""
    return ssl.create_default_context(cafile=str(data.ca_cert))


def _load(path: Path) -> dict[int, Credential]:
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {row["index"]: Credential(**row) for row in rows}


def _save(path: Path, known: dict[int, Credential]) -> None:
    rows = [vars(known[i]) for i in sorted(known)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    tmp.chmod(0o600)
    tmp.replace(path)


async def _enroll_range(
    client: httpx.AsyncClient, key: str, indices: list[int], found: dict[int, Credential]
) -> None:
    for index in indices:
        response = await client.post(
            "/api/v1/enroll",
            json={
                "key": key,
                "machine_id": f"swarm-machine-{index:06d}",
                "facts": facts(index, f"swarm-enroll-{index}"),
            },
        )
        if response.status_code != 201:
            raise RuntimeError(f"enrollment {index}: HTTP {response.status_code} {response.text}")
        body = response.json()
        found[index] = Credential(index, body["node_id"], body["credential"])


async def credentials(data: DataDir, api_url: str, count: int) -> list[Credential]:
    """``count`` credentials, enrolling only those the state file does not hold yet."""
    path = data.root / STATE_FILE
    known = _load(path)
    missing = [i for i in range(count) if i not in known]
    if missing:
        key = str(load_key(data, KeyKind.ENROLLMENT))
        began = time.monotonic()
        async with httpx.AsyncClient(
            base_url=api_url, verify=client_tls(data), timeout=60, trust_env=False
        ) as client:
            try:
                await asyncio.gather(
                    *(
                        _enroll_range(client, key, missing[part::CONCURRENCY], known)
                        for part in range(CONCURRENCY)
                    )
                )
            finally:
                _save(path, known)
        took = time.monotonic() - began
        print(
            f"enrolled {len(missing)} nodes in {took:.1f} s ({took / len(missing) * 1000:.1f} ms each)"
        )
    return [known[i] for i in range(count)]
