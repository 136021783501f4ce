"""An emulator in a process of its own, for tests that load it like a real server.

    python tests/emulator_process.py [--token-lifetime S]

Prints its base URL on the first line, then answers each line it reads: `stats` gets
one JSON line of counters; `stop`, or the end of its input, stops it. A test that
drives thousands of requests keeps the server off its own interpreter's lock this way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from pinkcloudsync_async.testing import Emulator, serve_emulator


async def serve(token_lifetime: int) -> None:
    emulator = Emulator(token_lifetime=token_lifetime)
    async with serve_emulator(emulator) as url:
        print(url, flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "stats":
            stats = emulator.stats
            counters = {
                "token_requests": stats.token_requests,
                "api_requests": stats.api_requests,
                "api_requests_by_status": dict(stats.api_requests_by_status),
            }
            print(json.dumps(counters), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--token-lifetime", type=int, default=3600)
    asyncio.run(serve(parser.parse_args().token_lifetime))
