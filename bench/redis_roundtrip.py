"""The raw floor of a fan-out: Redis publish → subscriber → reply, for N simulated agents.

Run alone: ``uv run python bench/redis_roundtrip.py --messages 1000 [--redis URL] [--rounds 3]``
(without ``--redis`` a private ``redis-server`` is started); :mod:`fanout`
runs it against the core's own Redis in the same run.

Two processes, like the core and the swarm:

- the responder (``--serve``, a child process) plays N agents: one
  connection subscribed to N per-agent channels ``rt:<run>:<i>``; every
  message it reads is parsed (orjson) and answered with a report-sized reply
  published on ``rt:<run>:replies``; the replies of everything read in one go
  leave in one pipeline;
- the publisher (this process) subscribes to the replies, then publishes one
  execute-sized message (an ``execute`` frame with a signed-order-sized
  ``order``, ~700 bytes) to each agent's channel in one pipeline, and waits
  until every reply is back.

Measured: seconds from the first publish until the last reply arrived, and
each message's publish → reply latency (p50/p99). That is the least any
fan-out through Redis to N receivers and back can cost on this machine, in
Python, with nothing recorded anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

HERE = Path(__file__).resolve().parent
READY = "ready"
READ_TIMEOUT = 1.0
SUBSCRIBE_CHUNK = 1000


def frame(run: str, index: int, now: float) -> bytes:
    """An ``execute``-sized message for agent ``index`` (the order of a shell ``true``)."""
    execution_id = f"x_{run}_{index:06d}"
    order = orjson.dumps(
        {
            "v": 1,
            "execution_id": execution_id,
            "command_id": f"c_{run}",
            "node_id": f"n_{uuid.uuid4().hex}",
            "kind": "shell",
            "issued_at": now,
            "expires_at": now + 3600,
            "timeout": 60,
            "shell": {"script": "true"},
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    return orjson.dumps(
        {
            "v": 1,
            "type": "execute",
            "execution_id": execution_id,
            "order": order,
            "signature": "A" * 86,
            "i": index,
        }
    )


def reply(message: dict[str, Any], now: float) -> bytes:
    """A ``finished``-sized answer naming the message's index."""
    return orjson.dumps(
        {
            "v": 1,
            "type": "finished",
            "execution_id": message["execution_id"],
            "seq": 1,
            "at": now,
            "status": "succeeded",
            "exit_code": 0,
            "started_at": now,
            "ended_at": now,
            "stdout": {"bytes": 0, "sha256": "e3" * 32, "truncated": False},
            "stderr": {"bytes": 0, "sha256": "e3" * 32, "truncated": False},
            "i": message["i"],
        }
    )


async def serve(url: str, run: str, agents: int) -> None:
    """The responder: N agents' channels on one subscription; prints ``ready`` once subscribed."""
    client = aioredis.Redis.from_url(url)
    sender = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    channels = [f"rt:{run}:{i}" for i in range(agents)]
    for start in range(0, agents, SUBSCRIBE_CHUNK):
        await pubsub.subscribe(*channels[start : start + SUBSCRIBE_CHUNK])
    # Wait until the server confirmed every channel (subscribe replies are read lazily).
    while len(await client.pubsub_channels(f"rt:{run}:*")) < agents:
        await pubsub.get_message(timeout=0.01)
    print(READY, flush=True)
    replies = f"rt:{run}:replies"
    answered = 0
    try:
        while answered < agents:
            message = await pubsub.get_message(timeout=READ_TIMEOUT)
            if message is None:
                continue
            batch = [message]
            while (more := await pubsub.get_message(timeout=0)) is not None:
                batch.append(more)
            now = time.time()
            pipe = sender.pipeline(transaction=False)
            for item in batch:
                pipe.publish(replies, reply(orjson.loads(item["data"]), now))
            await pipe.execute()
            answered += len(batch)
    finally:
        await pubsub.aclose()
        await client.aclose()
        await sender.aclose()


@dataclass(frozen=True)
class RoundTrip:
    messages: int
    seconds: float  # first publish → last reply
    latencies: list[float]  # per message: publish of the whole batch began → its reply

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]

    def line(self) -> str:
        return (
            f"raw Redis round trip, {self.messages} agents: {self.seconds * 1000:.0f} ms until every "
            f"reply was back; per message p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms"
        )


async def round_trip(url: str, messages: int, within: float = 120) -> RoundTrip:
    """One measured round: a responder child for ``messages`` agents, all published, all back."""
    run = uuid.uuid4().hex[:8]
    responder = await asyncio.create_subprocess_exec(
        *(sys.executable, str(HERE / "redis_roundtrip.py"), "--serve", "--redis", url),
        *("--run", run, "--messages", str(messages)),
        stdout=asyncio.subprocess.PIPE,
    )
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(f"rt:{run}:replies")
        assert responder.stdout is not None
        line = await asyncio.wait_for(responder.stdout.readline(), within)
        if line.decode().strip() != READY:
            raise RuntimeError(f"the responder did not start: {line!r}")
        frames = [frame(run, i, time.time()) for i in range(messages)]
        back = [0.0] * messages
        seen = 0
        began = time.time()
        pipe = client.pipeline(transaction=False)
        for i, payload in enumerate(frames):
            pipe.publish(f"rt:{run}:{i}", payload)
        await pipe.execute()
        deadline = time.monotonic() + within
        while seen < messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {messages} replies came back")
            message = await pubsub.get_message(timeout=READ_TIMEOUT)
            if message is None:
                continue
            now = time.time()
            index = orjson.loads(message["data"])["i"]
            if not back[index]:
                back[index] = now
                seen += 1
        last = max(back)
        return RoundTrip(messages, last - began, [t - began for t in back])
    finally:
        await pubsub.aclose()
        await client.aclose()
        try:
            await asyncio.wait_for(responder.wait(), 10)
        except TimeoutError:
            responder.kill()
            await responder.wait()


async def main_async(args: argparse.Namespace) -> None:
    if args.serve:
        await serve(args.redis, args.run, args.messages)
        return
    with ExitStack() as stack:
        url = args.redis
        if url is None:
            from harness import private_redis

            url = stack.enter_context(
                private_redis(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            )
        rounds = []
        for _ in range(args.rounds):
            result = await round_trip(url, args.messages)
            rounds.append(result)
            print(result.line())
        median = statistics.median(r.seconds for r in rounds)
        print(f"median of {len(rounds)} rounds: {median * 1000:.0f} ms")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    p.add_argument("--messages", type=int, default=1000, help="simulated agents, one message each")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run", default="", help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    asyncio.run(main_async(parser().parse_args()))
