#!/usr/bin/env python3
"""The asyncio server of tests/live_async.rs: the slow-consumer leak, on purpose.

    python3 live_async_server.py MAX_SECONDS

Listens on 127.0.0.1 (an ephemeral port) and prints `ready PORT`. Each client sends one
byte first:
  `p`  push: the server writes a 64 KiB chunk every 100 ms and never awaits `drain()`, the
       fan-out bug. A client that stops reading fills its window, then the kernel's send
       buffer; the rest piles up in the transport's buffer, in user space, without bound.
  `h`  hold: the server waits for the client's EOF and then forgets to close its end (the
       CLOSE_WAIT leak of an async handler).
On stdin, `release` closes every held connection (answers `released N`). Exits after
MAX_SECONDS, or when stdin closes.
"""
import asyncio
import os
import sys

CHUNK = b"x" * 65536
held = []


async def push(writer):
    while not writer.is_closing():
        writer.write(CHUNK)  # no `await writer.drain()`: the bug
        await asyncio.sleep(0.1)


async def handle(reader, writer):
    mode = await reader.read(1)
    if mode == b"p":
        await push(writer)
    elif mode == b"h":
        await reader.read()  # b"" at the client's EOF
        held.append(writer)  # ... and never closed


async def commands():
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip() == "release":
            n = len(held)
            for w in held:
                w.close()
            held.clear()
            print(f"released {n}", flush=True)


async def main(max_seconds):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    try:
        await asyncio.wait_for(commands(), timeout=max_seconds)
    except asyncio.TimeoutError:
        pass
    os._exit(0)  # not waiting for the stdin reader's thread


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1])))
