"""Run a seeded command stream through a fresh engine and print digests of its events and state.

    python -m exchange.testing.digest --seed 7 --commands 3000

Used to prove determinism across processes: the same seed must print the same two digests whatever
PYTHONHASHSEED is.
"""

from __future__ import annotations

import argparse
import hashlib

from exchange.domain.engine import Engine
from exchange.domain.statehash import state_hash
from exchange.testing.flow import random_commands


def digests(seed: int, commands: int) -> tuple[str, str]:
    engine = Engine()
    events = hashlib.sha256()
    for command, ts in random_commands(seed, commands):
        for event in engine.apply(command, ts):
            events.update(repr(event).encode())
            events.update(b"\n")
    engine.audit()
    return events.hexdigest(), state_hash(engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--commands", type=int, default=3_000)
    args = parser.parse_args()
    events, state = digests(args.seed, args.commands)
    print(f"events {events}")
    print(f"state  {state}")


if __name__ == "__main__":
    main()
