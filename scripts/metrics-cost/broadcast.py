"""Broadcast load for scripts/metrics-cost.sh: CONNS subscribers; a publisher sends N
~256-byte ticks, each after every subscriber got the one before."""
import asyncio
import sys

import websockets


async def main(base, subs, n):
    conns = [await websockets.connect(base + "/sub", compression=None) for _ in range(subs)]
    pub = await websockets.connect(base + "/pub", compression=None)
    for i in range(n):
        await pub.send('{"seq":%d,"sent":0,"pad":"%s"}' % (i, "x" * 220))
        for conn in conns:
            await conn.recv()
    await pub.close()
    for conn in conns:
        await conn.close()


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
