"""Per-heartbeat decode + validate in the gateway, in one process on one core.

``old``: orjson + the validator fastjsonschema compiles from the heartbeat's
definition (what the gateway did before); ``new``: the gateway's
``Protocol.decode`` (one msgspec pass over the Structs of
``sm_gateway.agent_messages``); ``raw``: orjson.loads alone, no validation (the
baseline every figure is divided by). Two frames: the contract's first
heartbeat example (2 cores, 1 disk, 1 interface) and a larger host (32 cores,
8 disks, 6 interfaces).

    uv run --frozen python bench/protocol_decode.py
"""

from __future__ import annotations

import copy
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from sm_gateway.protocol import Protocol, load_schema
from sm_gateway.schema_validators import compile_validators, decode_message

ROUNDS = 7


def larger_host(example: dict[str, Any]) -> dict[str, Any]:
    message = copy.deepcopy(example)
    sample = message["sample"]
    sample["cpu"]["per_core"] = [12.5 + i for i in range(32)]
    sample["disks"] = [{**sample["disks"][0], "mount": f"/srv/{i}"} for i in range(8)]
    interfaces = sample["net"]["interfaces"]
    sample["net"]["interfaces"] = [{**interfaces[0], "name": f"eth{i}"} for i in range(6)]
    return message


def per_call_us(call: Callable[[], Any]) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    best = min(timer.repeat(ROUNDS, number))
    return best / number * 1e6


def main() -> None:
    schema = load_schema()
    old_validators = compile_validators(schema, ("heartbeat",))
    protocol = Protocol(schema)
    example = schema["definitions"]["heartbeat"]["examples"][0]
    for label, message in (("example", example), ("32 cores", larger_host(example))):
        frame = orjson.dumps(message).decode()
        protocol.decode(frame)  # both accept it
        decode_message(frame, old_validators)
        times = {
            "raw (orjson.loads)": per_call_us(partial(orjson.loads, frame)),
            "old (orjson+fastjsonschema)": per_call_us(
                partial(decode_message, frame, old_validators)
            ),
            "new (msgspec Structs)": per_call_us(partial(protocol.decode, frame)),
        }
        base = times["raw (orjson.loads)"]
        print(f"heartbeat frame: {label}, {len(frame)} bytes (best of {ROUNDS} rounds)")
        for name, value in times.items():
            print(f"  {name:30} {value:7.2f} us  ratio to raw {value / base:5.2f}")
        old, new = times["old (orjson+fastjsonschema)"], times["new (msgspec Structs)"]
        print(f"  old / new: {old / new:.1f}x")


if __name__ == "__main__":
    main()
