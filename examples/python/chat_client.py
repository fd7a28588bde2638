#!/usr/bin/env python3
"""A Crimson chat client in Python: plain JSON over a plain WebSocket (pip install websockets).

    python3 chat_client.py ws://127.0.0.1:54321/chat "hello from python"

Sends one message, prints every message the server broadcasts until its own comes back,
then closes with 1000. The websockets package offers permessage-deflate by default; the
first line printed says what the server agreed to.
"""
import asyncio
import json
import sys

import websockets


async def main(url: str, text: str) -> None:
    async with websockets.connect(url) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "none")
        print(f"extensions: {extensions}", flush=True)
        await ws.send(json.dumps({"text": text}))  # a Text frame: Crimson's JSON convention
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            print(f"{message['from']}: {message['text']}", flush=True)
            if message["text"] == text:
                break


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
