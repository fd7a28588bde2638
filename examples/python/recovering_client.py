#!/usr/bin/env python3
"""A Crimson chat client in Python that speaks the Crimson protocol by hand (crimson.v1,
docs/protocol.md section 3) to recover what it missed while away: no Crimson code, only
`websockets` (pip install websockets).

    python3 recovering_client.py URL say TEXT
        says TEXT, waits for its publication to come back and prints its position:
        `position STREAM EPOCH OFFSET`
    python3 recovering_client.py URL resume STREAM EPOCH OFFSET
        resumes from that position and prints `recovered N` and the N missed messages
        (`FROM: TEXT`), or `not recovered: REASON`

Each run is one connection, closed with 1000 at the end.
"""
import asyncio
import json
import sys
from urllib.parse import quote, unquote

import websockets


def split(frame: str):
    """A frame's kind, its fields and its body."""
    header, _, body = frame.partition("\n")
    words = header.split(" ") if header else []
    kind = words[0] if words else ""
    fields = {}
    for word in words[1:]:
        key, _, value = word.partition("=")
        fields[key] = unquote(value)
    return kind, fields, body


async def next_frame(ws):
    return split(await asyncio.wait_for(ws.recv(), timeout=10))


async def say(url: str, text: str) -> None:
    async with websockets.connect(url, subprotocols=["crimson.v1.json"]) as ws:
        assert ws.subprotocol == "crimson.v1.json", ws.subprotocol
        # A plain message: an empty header line, then the JSON.
        await ws.send("\n" + json.dumps({"text": text}))
        while True:
            kind, fields, body = await next_frame(ws)
            if kind == "pub" and json.loads(body)["text"] == text:
                print(f"position {fields['s']} {fields['e']} {fields['o']}", flush=True)
                return


async def resume(url: str, stream: str, epoch: str, offset: str) -> None:
    async with websockets.connect(url, subprotocols=["crimson.v1.json"]) as ws:
        await ws.send(f"resume s={quote(stream, safe='')} e={quote(epoch, safe='')} o={offset}\n")
        delivered = int(offset)
        while True:
            kind, fields, body = await next_frame(ws)
            if fields.get("s") != stream:
                continue
            if kind == "lost":
                print(f"not recovered: {fields['reason']}", flush=True)
                return
            if kind == "recovered":
                count = int(fields["n"])
                for _ in range(count):
                    kind, fields, body = await next_frame(ws)
                    assert kind == "pub" and fields["s"] == stream, (kind, fields)
                    assert int(fields["o"]) == delivered + 1, "in order, none skipped"
                    delivered += 1
                    message = json.loads(body)
                    print(f"{message['from']}: {message['text']}", flush=True)
                print(f"recovered {count}", flush=True)
                return


if __name__ == "__main__":
    url, command, *rest = sys.argv[1:]
    if command == "say":
        asyncio.run(say(url, rest[0]))
    elif command == "resume":
        asyncio.run(resume(url, *rest))
    else:
        sys.exit(f"say or resume, not {command!r}")
