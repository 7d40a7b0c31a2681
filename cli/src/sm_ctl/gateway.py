"""Running the gateway in this process: ``smctl serve gateway``.

Kept apart from :mod:`sm_ctl.services` so the gateway process does not import
the three HTTP services it does not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from sm_ctl.catalog import Listener
from sm_gateway import server
from sm_gateway.settings import GatewaySettings
from sm_shared.datadir import DataDir


def serve(listener: Listener, data: DataDir) -> None:
    """Run the gateway (``sm_gateway.server.serve``) until SIGTERM/SIGINT."""
    if not listener.tls:
        raise SystemExit(
            "the gateway always serves TLS (agents verify it with the core CA); drop --no-tls"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = GatewaySettings(data_dir=data.root, host=listener.host, port=listener.port)
    asyncio.run(until_signalled(server.serve(settings)))


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it returns or SIGTERM/SIGINT arrives (then cancel it)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
