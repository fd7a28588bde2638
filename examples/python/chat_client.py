#!/usr/bin/env python3
"""A Crimson chat client in Python: plain frames over a plain WebSocket
(pip install websockets; cbor2 too for --codec cbor).

    python3 chat_client.py ws://127.0.0.1:54321/chat "hello from python" [--codec cbor]

Sends one message, prints every message the server broadcasts until its own comes back,
then closes with 1000. JSON by default (Text frames, no subprotocol asked for); with
`--codec cbor` it asks for `Sec-WebSocket-Protocol: crimson.cbor` and speaks CBOR in Binary
frames (docs/protocol.md). The websockets package offers permessage-deflate by default; the
first lines printed say what the server agreed to.
"""
import asyncio
import json
import sys

import websockets


async def main(url: str, text: str, codec: str) -> None:
    if codec == "json":
        encode, decode, protocols = json.dumps, json.loads, None
    elif codec == "cbor":
        import cbor2

        encode, decode, protocols = cbor2.dumps, cbor2.loads, ["crimson.cbor"]
    else:
        sys.exit(f"--codec: json or cbor, not {codec!r}")
    async with websockets.connect(url, subprotocols=protocols) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "none")
        print(f"extensions: {extensions}", flush=True)
        print(f"protocol: {ws.subprotocol or 'none'}", flush=True)
        # JSON: a str, sent in a Text frame; CBOR: bytes, in a Binary frame.
        await ws.send(encode({"text": text}))
        while True:
            message = decode(await asyncio.wait_for(ws.recv(), timeout=10))
            print(f"{message['from']}: {message['text']}", flush=True)
            if message["text"] == text:
                break


if __name__ == "__main__":
    args = sys.argv[1:]
    codec = "json"
    if "--codec" in args:
        at = args.index("--codec")
        codec = args[at + 1]
        del args[at : at + 2]
    asyncio.run(main(args[0], args[1], codec))
