"""The sandbox's only way out with Sandbox.network=proxy: an HTTP proxy outside the sandbox,
serving a listening socket that the sandbox's first process made on its own loopback (so cells
reach it at 127.0.0.1, and nothing else of the host's network).

Every request comes from untrusted code. A request names a host (CONNECT host:port, or an
absolute http:// URL); the proxy goes there only if an entry of Sandbox.allowed_hosts allows it
(network_policy.py), resolves the name itself, and connects only to an address the policy lets
it reach: never the host's own, never loopback or link-local, a private one only by an address
entry. It connects to the address it checked, so a second DNS answer cannot change it.

A process of its own: egress.py starts it with this code and network_policy.py's through a
pipe, and argv `CODE_FD FD UID:GID '["entry", ...]'`. FD is the listening socket; UID:GID whom
to become before serving (nobody when the kernel is root; "-": stay); stdin its lifeline (end of
file: exit); stdout a stream of JSON lines, one per request ({"host", "port", "allowed", "why"}),
dropped rather than waited on when the kernel is slow.
"""

import asyncio
import concurrent.futures.thread  # noqa: F401  (asyncio's resolver threads, and
import encodings.idna  # noqa: F401  the codec of host names: loaded before the uid changes)
import json
import os
import re
import socket
import sys
import urllib.parse

HEAD_LIMIT = 16384  # a request line and headers; longer is refused
HEAD_TIMEOUT = 30
RESOLVE_TIMEOUT = CONNECT_TIMEOUT = 10
MAX_CONNECTIONS = 128
CHUNK = 65536
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Host is replaced by the URL's own: another would let a shared server pick a site not allowed.
DROPPED_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive", "host"}


class Refused(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status, self.why = status, why


class Proxy:
    def __init__(self, entries):
        self.entries = entries
        self.active = 0

    async def handle(self, reader, writer):
        self.active += 1
        try:
            if self.active > MAX_CONNECTIONS:
                _answer(writer, 503, f"more than {MAX_CONNECTIONS} connections at once")
                return
            await self._serve(reader, writer)
        except Refused as e:
            _answer(writer, e.status, e.why)
            await _linger(reader, writer)
        except Exception:  # noqa: BLE001  (whatever a request does, it ends only its connection)
            pass
        finally:
            self.active -= 1
            writer.close()

    async def _serve(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except asyncio.LimitOverrunError:
            raise Refused(431, f"request head longer than {HEAD_LIMIT} bytes") from None
        lines = head.decode("latin-1").split("\r\n")[:-2]
        if any(CONTROL.search(line) for line in lines):
            # A lone LF or CR would let a server that accepts one read headers the proxy did not.
            raise Refused(400, "a control character in the request head (lines end with CRLF)")
        method, target, version = (lines[0].split(" ") + ["", "", ""])[:3]
        if not version.startswith("HTTP/1."):
            raise Refused(400, "not an HTTP/1 proxy request")
        if method == "CONNECT":
            host, port = _split_authority(target)
            upstream = await self._open(host, port, tunnel=True)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            try:
                url = urllib.parse.urlsplit(target)
            except ValueError:
                raise Refused(400, "not a URL") from None
            if url.scheme != "http" or not url.netloc:
                raise Refused(400, "only CONNECT and absolute http:// URLs go through this proxy")
            authority = url.netloc.rpartition("@")[2]
            host, port = _split_authority(authority, default=80)
            upstream = await self._open(host, port, tunnel=False)
            path = urllib.parse.urlunsplit(("", "", url.path or "/", url.query, ""))
            headers = [line for line in lines[1:] if line and line.split(":", 1)[0].strip().lower() not in DROPPED_HEADERS]
            upstream[1].write(f"{method} {path} {version}\r\nHost: {authority}\r\n".encode("latin-1")
                              + "".join(f"{h}\r\n" for h in headers).encode("latin-1") + b"Connection: close\r\n\r\n")
        await _relay(reader, writer, *upstream)

    async def _open(self, name, port, tunnel):
        host = network_policy.host_of(name)
        if host is None or not 0 < port < 65536:
            raise Refused(400, f"{name[:100]!r}:{port} is not a host and port")
        entry = network_policy.allowing(self.entries, host, port, tunnel)
        if entry is None:
            self._event(host, port, False, "not in Sandbox.allowed_hosts")
            raise Refused(403, f"{host}:{port} is not in Sandbox.allowed_hosts")
        by_name = entry.network is None
        try:
            resolving = asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = [info[4][0] for info in await asyncio.wait_for(resolving, RESOLVE_TIMEOUT)]
        except (OSError, asyncio.TimeoutError) as e:
            why = getattr(e, "strerror", None) or str(e) or "timed out"
            self._event(host, port, False, f"cannot resolve: {why}")
            raise Refused(502, f"{host}: cannot resolve ({why})") from None
        refused = {}
        for address in dict.fromkeys(found):
            why = network_policy.refusal(address, by_name) or ("the host's own address" if network_policy.is_own(address) else None)
            if why:
                refused[address] = why
                continue
            try:
                connection = await asyncio.wait_for(asyncio.open_connection(address, port, limit=CHUNK), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                refused[address] = f"cannot connect: {getattr(e, 'strerror', None) or 'timed out'}"
                continue
            self._event(host, port, True, f"{address} by {entry.text}")
            return connection
        why = "; ".join(f"{a}: {w}" for a, w in refused.items())
        self._event(host, port, False, why)
        status = 502 if all(w.startswith("cannot connect") for w in refused.values()) else 403
        reason = "" if status == 502 else " (a name reaches public addresses only; an address entry may open a private one, never the host's own)"
        raise Refused(status, f"{host}:{port}: {why}{reason}")

    def _event(self, host, port, allowed, why):
        line = json.dumps({"host": host, "port": port, "allowed": allowed, "why": why[:300]}) + "\n"
        try:
            os.write(1, line.encode())
        except BlockingIOError:
            pass  # the kernel is behind: the request goes on, its line is lost


def _split_authority(text, default=None):
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:
        host, port = text, str(default) if default else ""
    if not (port.isascii() and port.isdigit()):
        raise Refused(400, f"{text[:100]!r} has no port")
    return host, int(port)


def _answer(writer, status, why):
    reason = {400: "Bad Request", 403: "Forbidden", 431: "Request Header Fields Too Large", 502: "Bad Gateway",
              503: "Service Unavailable"}[status]
    body = f"sandbox-kernel proxy: {why}\n".encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)


async def _linger(reader, writer):
    """Read what the client still sends, for a moment, before closing: closing on unread bytes
    resets the connection, and the reset can destroy the answer before the client reads it."""
    try:
        await writer.drain()
        writer.write_eof()
        deadline = asyncio.get_running_loop().time() + 2
        while await asyncio.wait_for(reader.read(CHUNK), deadline - asyncio.get_running_loop().time()):
            pass
    except (OSError, asyncio.TimeoutError):
        pass


async def _relay(client_reader, client_writer, upstream_reader, upstream_writer):
    async def pipe(reader, writer):
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # a half-close passes through: the other way may go on
        except OSError:  # a reset ends both ways, so that neither side waits on a dead one
            client_writer.close()
            upstream_writer.close()

    try:
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
    finally:
        upstream_writer.close()


async def main(fd, entries):
    listener = socket.socket(fileno=fd)
    proxy = Proxy(entries)
    server = await asyncio.start_server(proxy.handle, sock=listener, limit=HEAD_LIMIT)
    lifeline = asyncio.Event()
    asyncio.get_running_loop().add_reader(0, lifeline.set)  # the kernel's end of stdin closing: end of file
    async with server:
        await lifeline.wait()
        os._exit(0)  # at once: open tunnels end with it, they do not keep it alive


def become(ids):
    if ids != "-":
        uid, gid = map(int, ids.split(":"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)


if __name__ == "__main__":
    import network_policy  # (egress.py has loaded it)

    entries = [network_policy.parse(e) for e in json.loads(sys.argv[4])]  # argv[1]: the code's fd
    become(sys.argv[3])
    os.set_blocking(1, False)
    asyncio.run(main(int(sys.argv[2]), entries))
