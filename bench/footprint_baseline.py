"""The agent footprint's raw baseline: a minimal psutil + websockets loop.

Run by ``agent_footprint.py`` (``python bench/footprint_baseline.py URL CAFILE INTERVAL``).
Every interval it takes what a monitoring agent minimally takes (CPU %,
memory, root disk usage, network counters, load) and sends it as JSON over
one TLS WebSocket (compression off) to the bare baseline server. Only
psutil, websockets and the standard library: no buffer, no collectors'
rate bookkeeping, no reconnects.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time

import psutil
from websockets.asyncio.client import connect


async def loop(url: str, cafile: str, interval: float) -> None:
    context = ssl.create_default_context(cafile=cafile)
    async with connect(url, ssl=context, compression=None) as ws:
        await ws.send(json.dumps({"v": 1, "type": "hello"}))
        await ws.recv()
        seq = 0
        while True:
            memory = psutil.virtual_memory()
            disk = psutil.disk_usage("/")
            net = psutil.net_io_counters()
            sample = {
                "cpu": psutil.cpu_percent(),
                "memory": [memory.total, memory.used, memory.available],
                "disk": [disk.total, disk.used, disk.free],
                "net": [net.bytes_recv, net.bytes_sent],
                "load": os.getloadavg(),
            }
            await ws.send(
                json.dumps(
                    {"type": "heartbeat", "seq": seq, "sent_at": time.time(), "sample": sample}
                )
            )
            seq += 1
            await asyncio.sleep(interval)


if __name__ == "__main__":
    asyncio.run(loop(sys.argv[1], sys.argv[2], float(sys.argv[3])))
