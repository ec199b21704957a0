"""Two reference clients, driving the same emulator as the sync, with the same request bodies.

- `sequential_requests`: one PATCH per user, one after the other, over one `requests` session (keep-alive):
  what a per-event destination such as Segment's does. At 20 ms per request it manages ~50 users/s, so it
  is measured on a sample.
- `async_ceiling`: an aiohttp client (uvloop when installed) holding exactly `concurrency` requests in
  flight over `concurrency` pooled connections, with nothing else to do: the practical ceiling of this
  machine for that many requests in flight against this emulator.

Both send the headers the Edge API requires and check every answer is a 2xx.

    python bench/clients.py --url http://127.0.0.1:PORT --project-uid UID --concurrency 64 --users 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence

import requests

PATH = "/user-attributes"


def bench_bodies(count: int, prefix: str = "bench_") -> list[tuple[str, bytes]]:
    """(uid, JSON body) pairs shaped like the sync's first-sync bodies: all six attributes."""
    plans = ["free", "starter", "pro", "enterprise"]
    return [
        (
            f"{prefix}{index:08d}",
            json.dumps(
                {
                    "plan": plans[index % 4],
                    "ltv": round(index * 1.37 % 900, 2),
                    "orders": index % 200,
                    "vip": index % 10 == 0,
                    "signup_at": "2022-03-04T05:06:07Z",
                    "birthday": "1980-02-29",
                },
                separators=(",", ":"),
            ).encode(),
        )
        for index in range(count)
    ]


def _headers(project_uid: str, uid: str) -> dict[str, str]:
    return {
        "x-project-uid": project_uid,
        "x-cs-personalize-user-uid": uid,
        "Content-Type": "application/json",
    }


def sequential_requests(url: str, project_uid: str, bodies: Sequence[tuple[str, bytes]]) -> dict:
    """One PATCH at a time; returns users, seconds, users/s."""
    failures = 0
    with requests.Session() as session:
        started = time.perf_counter()
        for uid, body in bodies:
            response = session.patch(url + PATH, data=body, headers=_headers(project_uid, uid), timeout=30)
            failures += not response.ok
        elapsed = time.perf_counter() - started
    return {
        "users": len(bodies),
        "seconds": round(elapsed, 3),
        "users_per_s": round(len(bodies) / elapsed, 1),
        "failures": failures,
    }


async def _drive(url: str, project_uid: str, bodies: Sequence[tuple[str, bytes]], concurrency: int) -> dict:
    import aiohttp

    failures = 0
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for uid, body in queue:  # the shared iterator hands each body to exactly one worker
                async with session.patch(
                    url + PATH, data=body, headers=_headers(project_uid, uid)
                ) as response:
                    await response.read()
                    failures += response.status >= 300

        # warm the pool so connection set-up is not timed
        await asyncio.gather(*(session.get(url + "/_emulator/config") for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "users": len(bodies),
        "seconds": round(elapsed, 3),
        "users_per_s": round(len(bodies) / elapsed, 1),
        "failures": failures,
        "concurrency": concurrency,
    }


def async_ceiling(url: str, project_uid: str, bodies: Sequence[tuple[str, bytes]], concurrency: int) -> dict:
    try:
        import uvloop

        loop_name = "uvloop"
        runner = uvloop.run
    except ImportError:
        loop_name = "asyncio"
        runner = asyncio.run
    result = runner(_drive(url, project_uid, bodies, concurrency))
    result["event_loop"] = loop_name
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--project-uid", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--sequential-users", type=int, default=1000)
    args = parser.parse_args()
    print(
        "sequential:",
        sequential_requests(args.url, args.project_uid, bench_bodies(args.sequential_users, "seq_")),
    )
    print(
        "async:",
        async_ceiling(args.url, args.project_uid, bench_bodies(args.users, "async_"), args.concurrency),
    )


if __name__ == "__main__":
    main()
