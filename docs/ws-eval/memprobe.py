#!/usr/bin/env python3
"""memprobe.py PORT PID N: opens N idle WebSocket connections offering permessage-deflate,
each sends one compressed 200-byte text message and reads the echo, then measures server RSS."""
import asyncio, base64, os, sys, zlib, struct, time

def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def frame(payload, rsv1):
    mask = os.urandom(4)
    b0 = 0x80 | (0x40 if rsv1 else 0) | 0x1
    n = len(payload)
    hdr = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + struct.pack(">H", n)
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))

async def conn(port, deflate, keep):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    w.write((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    negotiated = b"permessage-deflate" in head.lower()
    msg = (b"hello crimson " * 20)[:200]
    if negotiated:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        p = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
        w.write(frame(p[:-4], True))
    else:
        w.write(frame(msg, False))
    await w.drain()
    h = await r.readexactly(2)
    n = h[1] & 0x7f
    if n == 126: n = struct.unpack(">H", await r.readexactly(2))[0]
    await r.readexactly(n)
    keep.append((r, w))
    return negotiated, head

async def main():
    port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    deflate = os.environ.get("NODEFLATE") is None
    keep = []
    neg, head = await conn(port, deflate, keep)
    print("response:", head.decode().strip().replace("\r\n", " | "))
    await asyncio.sleep(0.5)
    r0 = rss(pid)
    for i in range(0, n, 100):
        await asyncio.gather(*(conn(port, deflate, keep) for _ in range(min(100, n - i))))
    await asyncio.sleep(2)
    r1 = rss(pid)
    print(f"negotiated={neg} conns={len(keep)} rss_before={r0}KiB rss_after={r1}KiB per_conn={(r1-r0)*1024/n:.0f} bytes")
    for r, w in keep: w.close()

asyncio.run(asyncio.wait_for(main(), 120))
