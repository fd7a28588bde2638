"""Echo load for scripts/metrics-cost.sh: CONNS connections, each sends N ~32-byte JSON
messages, one at a time, and waits for each echo."""
import asyncio
import sys

import websockets


async def one(url, n):
    async with websockets.connect(url, compression=None) as ws:
        for i in range(n):
            await ws.send('{"seq":%d,"pad":"xxxxxxxxxxxxxxx"}' % i)
            await ws.recv()


async def main(base, conns, n):
    await asyncio.gather(*(one(base + "/echo", n) for _ in range(conns)))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
