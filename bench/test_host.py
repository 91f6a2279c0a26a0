"""A host for the network figure: a network namespace of the bench's own, joined to this machine
by a veth pair, with a public-looking address (192.88.99.0/24, the retired 6to4 relay block,
routed here to that namespace only) and an HTTP server that sends N bytes for any GET. Needs root
(and `ip`); the bench says why when it cannot make one."""

import os
import socket
import subprocess
import sys
import time
import uuid

SERVER = """import http.server, sys
SIZE, BLOCK = int(sys.argv[1]), b"x" * (1 << 20)
class Bulk(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        for start in range(0, SIZE, len(BLOCK)):
            self.wfile.write(BLOCK[: SIZE - start])
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Bulk).serve_forever()
"""


class Unavailable(Exception):
    pass


class TestHost:
    def __init__(self, size):
        if os.geteuid() != 0:
            raise Unavailable("making a test host needs root")
        tag = uuid.uuid4().hex[:6]
        self.ns, self.outer, inner = f"skb-{tag}", f"skb{tag}", f"skc{tag}"
        n = int(tag[:2], 16)
        private, self.address = f"10.205.{n}.2", f"192.88.99.{n}"
        self.server = None
        try:
            self._ip("netns", "add", self.ns)
            self._ip("link", "add", self.outer, "type", "veth", "peer", "name", inner)
            self._ip("link", "set", inner, "netns", self.ns)
            self._ip("addr", "add", f"10.205.{n}.1/30", "dev", self.outer)
            self._ip("link", "set", self.outer, "up")
            for cmd in (["addr", "add", f"{private}/30", "dev", inner], ["addr", "add", f"{self.address}/32", "dev", inner],
                        ["link", "set", inner, "up"]):
                self._ip("netns", "exec", self.ns, "ip", *cmd)
            self._ip("route", "add", f"{self.address}/32", "via", private)
            self.server = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-c", SERVER, str(size)])
            self._wait()
        except (OSError, subprocess.CalledProcessError, Unavailable) as e:
            self.close()
            raise Unavailable(f"no test host: {getattr(e, 'stderr', None) or e}") from None

    def _ip(self, *args):
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def _wait(self):
        for _ in range(100):
            try:
                socket.create_connection((self.address, 8080), 1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise Unavailable("the test host's server did not start")

    def close(self):
        if self.server:
            self.server.kill()
            self.server.wait()
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
