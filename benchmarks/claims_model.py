"""How many claimed transactions run at once: a model of two claim policies.

``python -m benchmarks.claims_model`` simulates a closed system of clients,
each running transfers between two random accounts of a few hot ones, every
transfer holding its two account keys for one time unit (the same length for
all, no think time), and prints, per policy and client count, how many
transfers ran at once on average and how long a claim waited (mean, p99,
max, in transfer lengths):

``ordered``
    Keys are taken one at a time in a fixed order, each key a FIFO queue: an
    attempt holding one key waits for the next while holding it (what
    ``claim_keys`` did before it took all keys at once).
``all-at-once``
    ``retry/_claims.py``: an attempt takes all its keys when none is held, or
    waits holding none; released keys go to the waiters in order, each that
    can start starting; a waiter overtaken ``MAX_OVERTAKEN`` times reserves its
    keys.

It is a model (no server, no event loop): it isolates the scheduling from the
client's CPU and the server's round trips. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections import deque

from sqlalchemy_crdb_async.retry._claims import MAX_OVERTAKEN

__all__ = ["Outcome", "simulate"]

Outcome = tuple[float, float, float, float]  # at once, mean, p99, max wait


class _Request:
    __slots__ = ("got", "keys", "overtaken", "since")

    def __init__(self, keys: tuple[int, int], since: float) -> None:
        self.keys = keys
        self.since = since
        self.got: list[int] = []
        self.overtaken = 0


def simulate(
    policy: str,
    *,
    clients: int = 16,
    accounts: int = 10,
    transfers: int = 30_000,
    seed: int = 1,
    max_overtaken: int = MAX_OVERTAKEN,
) -> Outcome:
    """Run the model; ``policy`` is ``"ordered"`` or ``"all-at-once"``."""
    if policy not in ("ordered", "all-at-once"):
        raise ValueError(f"policy must be 'ordered' or 'all-at-once', got {policy!r}")
    rng = random.Random(seed)
    held: dict[int, _Request] = {}
    queues: dict[int, deque[_Request]] = {k: deque() for k in range(accounts)}
    waiting: list[_Request] = []
    ends: list[tuple[float, int, _Request]] = []
    now = area = last = 0.0
    running = done = sequence = 0
    waits: list[float] = []

    def new() -> _Request:
        a, b = rng.sample(range(accounts), 2)
        return _Request((min(a, b), max(a, b)), now)

    def run(request: _Request) -> None:
        nonlocal running, sequence
        running += 1
        sequence += 1
        waits.append(now - request.since)
        heapq.heappush(ends, (now + 1.0, sequence, request))

    def ordered_take(request: _Request) -> None:
        while len(request.got) < len(request.keys):
            key = request.keys[len(request.got)]
            if key in held or queues[key]:
                queues[key].append(request)
                return
            held[key] = request
            request.got.append(key)
        run(request)

    def hand_out() -> None:
        reserved: set[int] = set()
        still: list[_Request] = []
        for request in waiting:
            keys = set(request.keys)
            if keys.isdisjoint(held) and keys.isdisjoint(reserved):
                for key in keys:
                    held[key] = request
                request.got = list(keys)
                for earlier in still:
                    if not keys.isdisjoint(earlier.keys):
                        earlier.overtaken += 1
                run(request)
                continue
            if request.overtaken >= max_overtaken:
                reserved |= keys
            still.append(request)
        waiting[:] = still

    def arrive(request: _Request) -> None:
        if policy == "ordered":
            ordered_take(request)
        else:
            waiting.append(request)
            hand_out()

    for _ in range(clients):
        arrive(new())
    while done < transfers:
        end, _, finished = heapq.heappop(ends)
        area += running * (end - last)
        last = now = end
        running -= 1
        done += 1
        for key in finished.got:
            del held[key]
        if policy == "ordered":
            for key in finished.keys:
                if queues[key]:
                    nxt = queues[key].popleft()
                    held[key] = nxt
                    nxt.got.append(key)
                    ordered_take(nxt)
        else:
            hand_out()
        arrive(new())
    waits.sort()
    return (
        area / now,
        sum(waits) / len(waits),
        waits[len(waits) * 99 // 100],
        waits[-1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("| policy | clients | at once | mean wait | p99 wait | max wait |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in ("ordered", "all-at-once"):
        for clients in (int(c) for c in args.clients.split(",")):
            at_once, mean, p99, longest = simulate(
                policy, clients=clients, accounts=args.accounts, seed=args.seed
            )
            print(
                f"| {policy} | {clients} | {at_once:.2f} | {mean:.1f} | "
                f"{p99:.1f} | {longest:.1f} |"
            )


if __name__ == "__main__":
    main()
