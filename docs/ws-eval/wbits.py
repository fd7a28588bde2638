#!/usr/bin/env python3
"""wbits.py PORT OFFER: handshake with OFFER, send 20 compressed text messages (4 KiB each), print echo status."""
import socket, os, sys, base64, zlib, struct, random
port, offer = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(5)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf: buf += s.recv(1)
ext = [l for l in buf.decode().split("\r\n") if l.lower().startswith("sec-websocket-extensions")]
print("response:", ext)
def recvn(n):
    d = b""
    while len(d) < n:
        c = s.recv(n - len(d))
        if not c: raise EOFError("closed")
        d += c
    return d
e = ext[0] if ext else ""
wb = 9 if ("server_max_window_bits=9" in e or os.environ.get("FORCE9")) else 15
cb = 9 if "client_max_window_bits=9" in e else 15
dec = zlib.decompressobj(-wb)
random.seed(1)
words = [bytes(random.choice(b"abcdefghij") for _ in range(5)) for _ in range(200)]
for i in range(20):
    msg = b" ".join(random.choice(words) for _ in range(700))[:4096]
    comp = zlib.compressobj(6, zlib.DEFLATED, -cb)  # fresh per message: we offered client_no_context_takeover
    p = comp.compress(msg) + comp.flush(zlib.Z_SYNC_FLUSH); p = p[:-4]
    mask = os.urandom(4)
    hdr = bytes([0xC1, 0x80 | 126]) + struct.pack(">H", len(p)) + mask
    s.sendall(hdr + bytes(c ^ mask[j % 4] for j, c in enumerate(p)))
    try:
        h = recvn(2); n = h[1] & 0x7f
        if n == 126: n = struct.unpack(">H", recvn(2))[0]
        body = recvn(n)
    except Exception as e:
        print(f"msg {i}: no echo: {e!r}"); break
    if h[0] & 0x0f == 8: print(f"msg {i}: close frame {body[:2].hex()} {body[2:]!r}"); break
    out = dec.decompress(body + b"\x00\x00\xff\xff") if h[0] & 0x40 else body
    if out != msg: print(f"msg {i}: MISMATCH (rsv1={bool(h[0]&0x40)}, {len(out)} bytes)"); break
else:
    print("20 echoes OK; server wbits", wb, "client wbits", cb)
