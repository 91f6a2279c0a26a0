"""Sandbox.network=proxy: cells reach the hosts of Sandbox.allowed_hosts through the kernel's
proxy, and nothing else: not by another name, port or address, not the host's own services,
whatever a name resolves to. The 'internet' is a host in a network namespace of the test's own,
with a private and a public address (192.88.99.0/24, the retired 6to4 relay block: routed here
to the test's namespace only); names come from an /etc/hosts of the kernel's own mount namespace."""

import os
import signal
import socket
import tempfile
import threading

import pytest

from harness import Kernel, TestHost, process_tree, user_dir, wait_until

FLAVORS = ["root", "user"]
SERVER = """import http.server
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (self.requestline + "\\n" + "".join(f"{k}: {v}\\n" for k, v in self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Echo).serve_forever()
"""


@pytest.fixture(scope="module")
def internet():
    """(public address, private address, the host's own address on that link)."""
    host = TestHost(SERVER)
    yield host.public, host.private, host.own
    host.close()


class Canary:
    """Listeners of the host's, on loopback and on its own address: no connection may arrive."""

    def __init__(self, *addresses):
        self.sockets = [socket.create_server((a, 0)) for a in addresses]
        self.port = self.sockets[0].getsockname()[1]
        for s in self.sockets[1:]:
            s.close()
        self.sockets = [self.sockets[0]] + [socket.create_server((a, self.port)) for a in addresses[1:]]
        self.arrived = []
        for s in self.sockets:
            threading.Thread(target=self._watch, args=(s,), daemon=True).start()

    def _watch(self, s):
        try:
            while True:
                conn, peer = s.accept()
                self.arrived.append(peer)
                conn.close()
        except OSError:
            pass

    def close(self):
        for s in self.sockets:
            s.close()


def _kernel(flavor, internet, allowed, where="tmp"):
    public, private, own = internet
    hosts = tempfile.NamedTemporaryFile("w", prefix="sk-hosts-", suffix=".txt", delete=False)
    hosts.write(f"127.0.0.1 localhost\n::1 localhost ip6-localhost\n{public} public.test.example other.test.example\n"
                f"{private} private.test.example\n127.0.0.1 loopback.test.example\n{own} thishost.test.example\n"
                "169.254.169.254 metadata.test.example\n")
    hosts.close()
    os.chmod(hosts.name, 0o644)
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
              f'mount --bind {hosts.name} /etc/hosts && exec "$@"', "sh"]
    workspace = user_dir("sk-ws-") if flavor == "user" else tempfile.mkdtemp(prefix="sk-ws-")
    options = ["--Sandbox.network=proxy", *[f"--Sandbox.allowed_hosts={a}" for a in allowed]]
    if where == "home":  # the notebook in HOME, beside a credential
        os.makedirs(os.path.join(workspace, ".ssh"))
        with open(os.path.join(workspace, ".ssh", "id_ed25519"), "w") as f:
            f.write("PRIVATE KEY\n")
        return Kernel(workspace, options=options, flavor=flavor, prefix=prefix, home=workspace)
    return Kernel("/" if where == "/" else workspace, options=options, flavor=flavor, prefix=prefix)


def _proxy_processes(kernel):
    found = []
    for pid in process_tree(kernel.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"-c" in argv and any(a.startswith(b"import sys; exec(open(int(sys.argv[1]))") for a in argv):
            found.append(pid)
    return found


def _ask(requests):
    """Cell code: each raw request to the proxy, and the first line of its answer."""
    lines = []
    for request in requests:
        lines.append(f"exec 3<>/dev/tcp/127.0.0.1/3128 && printf '%s\\r\\n\\r\\n' '{request}' >&3 && "
                     f"{{ IFS= read -r line <&3; echo \"{request} -> ${{line%$'\\r'}}\"; exec 3<&-; }}")
    return "\n".join(lines)


@pytest.fixture(scope="module", params=FLAVORS)
def wide_open(request, internet):
    """A kernel whose allowlist names every name, address and port: what remains refused, the
    policy refuses whatever the configuration says."""
    k = _kernel(request.param, internet, ["*:*", "*.test.example:*", "0.0.0.0/0:*", "[::/0]:*"])
    yield k
    k.shutdown()


def test_names_and_addresses_never_lead_to_the_host_or_its_loopback(wide_open, internet):
    public, private, own = internet
    canary = Canary("127.0.0.1", own)
    try:
        p = canary.port
        refused = [f"127.0.0.1:{p}", f"[::1]:{p}", f"[::ffff:127.0.0.1]:{p}", f"[::127.0.0.1]:{p}", f"[64:ff9b::127.0.0.1]:{p}",
                   f"[2002:7f00:1::1]:{p}", f"0.0.0.0:{p}", f"[::]:{p}", f"localhost:{p}", f"loopback.test.example:{p}",
                   f"{own}:{p}", f"thishost.test.example:{p}", "169.254.169.254:80", "metadata.test.example:80"]
        unreadable = [f"2130706433:{p}", f"0x7f000001:{p}", f"127.1:{p}", f"[fe80::1%lo]:{p}"]  # addresses as names, a zone
        r = wide_open.run(_ask([f"CONNECT {t} HTTP/1.1" for t in refused + unreadable] + [f"GET http://127.0.0.1:{p}/ HTTP/1.1"]))
        answers = r.stdout.splitlines()
        assert len(answers) == len(refused) + len(unreadable) + 1, r.stdout + r.stderr
        for line, target in zip(answers, refused + unreadable + [refused[0]]):
            assert target in line and line.endswith("403 Forbidden" if target not in unreadable else "400 Bad Request"), line
        assert canary.arrived == [], "a connection reached the host"
    finally:
        canary.close()
    report = wide_open.run("%sandbox network").stdout
    assert f"refused  127.0.0.1:{p}" in report and "127.0.0.1: loopback" in report, report
    assert f"refused  thishost.test.example:{p}" in report and f"{own}: the host's own address" in report, report
    assert "169.254.169.254: link-local" in report, report


def test_a_name_reaches_public_addresses_only_and_an_address_entry_a_private_one(wide_open, internet):
    public, private, _own = internet
    r = wide_open.run(_ask(["CONNECT public.test.example:8080 HTTP/1.1", "CONNECT private.test.example:8080 HTTP/1.1",
                            f"CONNECT {private}:8080 HTTP/1.1"]))
    assert r.stdout.splitlines() == [
        "CONNECT public.test.example:8080 HTTP/1.1 -> HTTP/1.1 200 Connection established",
        "CONNECT private.test.example:8080 HTTP/1.1 -> HTTP/1.1 403 Forbidden",
        f"CONNECT {private}:8080 HTTP/1.1 -> HTTP/1.1 200 Connection established",
    ], r.stdout + r.stderr
    body = wide_open.run("curl -sS http://private.test.example:8080/").stdout
    assert body.startswith(f"sandbox-kernel proxy: private.test.example:8080: {private}: private"), body


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cells_reach_the_allowed_hosts_through_the_proxy_and_nothing_else(flavor, internet):
    public, private, _own = internet
    k = _kernel(flavor, internet, ["public.test.example:8080", "other.test.example"])
    try:
        proxies = _proxy_processes(k)
        assert len(proxies) == 1, proxies
        with open(f"/proc/{proxies[0]}/status") as f:
            uid = next(line.split()[1:] for line in f if line.startswith("Uid:"))
        expected = {"root": "nobody", "user": "sk-tester"}[flavor]
        assert uid == [str(__import__("pwd").getpwnam(expected).pw_uid)] * 4, uid

        status = k.run("%sandbox").stdout
        assert ("network:         private namespace, no route out; only through the kernel's HTTP proxy at "
                "http://127.0.0.1:3128 (http_proxy, https_proxy) to public.test.example:8080, other.test.example (Sandbox.allowed_hosts)") in status
        assert k.run("echo $https_proxy $no_proxy").stdout == "http://127.0.0.1:3128 localhost,127.0.0.1,::1\n"

        # Tools that honour http_proxy get there (curl, Python), and the server sees an ordinary
        # request: origin-form, no Proxy-* header.
        r = k.run("curl -sS http://public.test.example:8080/curl\n"
                  "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://public.test.example:8080/py\").read().decode())'")
        assert r.stdout.startswith("GET /curl HTTP/1.1\nHost: public.test.example:8080\n"), r.stdout + r.stderr
        assert "GET /py HTTP/1.1\n" in r.stdout and "proxy-" not in r.stdout.lower(), r.stdout
        tunnel = k.run("curl -sS -p http://public.test.example:8080/tunnel").stdout
        assert tunnel.startswith("GET /tunnel HTTP/1.1\n"), tunnel

        # Another name for the same address, another port, the address itself: refused, and said so.
        r = k.run("curl -sS http://other.test.example:8080/; curl -sS -p http://public.test.example:8443/ 2>&1 | tail -1\n"
                  f"curl -sS http://{public}:8080/")
        assert r.stdout.splitlines() == [
            "sandbox-kernel proxy: other.test.example:8080 is not in Sandbox.allowed_hosts",
            "curl: (56) CONNECT tunnel failed, response 403",
            f"sandbox-kernel proxy: {public}:8080 is not in Sandbox.allowed_hosts",
        ], r.stdout + r.stderr

        # A name without a port: http:// to port 80 and tunnels to 443 only (a tunnel to port 80
        # would carry any Host). Allowed, the test host answers neither: 502.
        r = k.run(_ask(["CONNECT other.test.example:80 HTTP/1.1", "CONNECT other.test.example:443 HTTP/1.1",
                        "GET http://other.test.example/ HTTP/1.1", "GET http://other.test.example:443/ HTTP/1.1"]))
        assert [line.rsplit(" -> ", 1)[1] for line in r.stdout.splitlines()] == [
            "HTTP/1.1 403 Forbidden", "HTTP/1.1 502 Bad Gateway", "HTTP/1.1 502 Bad Gateway", "HTTP/1.1 403 Forbidden"], r.stdout

        # No way around the proxy: no route out, no DNS.
        r = k.run(f"(exec 3<>/dev/tcp/{public}/8080) 2>&1; curl -sS --noproxy '*' -m 5 http://{public}:8080/ 2>&1")
        assert "Network is unreachable" in r.stdout and "GET" not in r.stdout, r.stdout

        report = k.run("%sandbox network").stdout
        assert "allowed  public.test.example:8080" in report and "3x" in report, report
        assert "refused  other.test.example:8080" in report and "not in Sandbox.allowed_hosts" in report, report
    finally:
        k.shutdown()
    assert wait_until(lambda: not _proxy_processes_alive(proxies), 10), "the proxy outlived its kernel"


def _proxy_processes_alive(pids):
    return [p for p in pids if os.path.exists(f"/proc/{p}")]


def test_bad_requests_get_an_answer_and_the_proxy_goes_on(wide_open):
    bad = ["CONNECT public.test.example HTTP/1.1", "GET /relative HTTP/1.1", "GET https://x.test.example/ HTTP/1.1",
           "CONNECT bad_name:80 HTTP/1.1", "NONSENSE", "CONNECT public.test.example:²² HTTP/1.1", "GET http://[x/ HTTP/1.1",
           "GET http://public.test.example:8080/\x01 HTTP/1.1"]
    r = wide_open.run(_ask(bad + ["CONNECT public.test.example:8080 HTTP/1.1"]))
    assert [line.rsplit(" -> ", 1)[1] for line in r.stdout.splitlines()] == [
        "HTTP/1.1 400 Bad Request"] * len(bad) + ["HTTP/1.1 200 Connection established"], r.stdout + r.stderr
    # A lone LF would let a server that takes one see a Host the proxy did not.
    lone_lf = wide_open.run("exec 3<>/dev/tcp/127.0.0.1/3128; printf 'GET http://public.test.example:8080/ HTTP/1.1\\nHost: x\\r\\n\\r\\n' >&3; head -1 <&3")
    assert lone_lf.stdout.startswith("HTTP/1.1 400 "), lone_lf.stdout
    big = wide_open.run("exec 3<>/dev/tcp/127.0.0.1/3128; { printf 'GET http://public.test.example:8080/ HTTP/1.1\\r\\n'; "
                        "head -c 20000 /dev/zero | tr '\\0' a; printf '\\r\\n\\r\\n'; } >&3; head -1 <&3")
    assert big.stdout.startswith("HTTP/1.1 431 "), big.stdout


def test_the_proxy_ends_when_its_kernel_is_killed(internet):
    k = _kernel("root", internet, ["public.test.example:8080"])
    try:
        proxies = _proxy_processes(k)
        assert len(proxies) == 1, proxies
        # An open tunnel to an idle server must not keep it alive either.
        r = k.run("exec 3<>/dev/tcp/127.0.0.1/3128; printf 'CONNECT public.test.example:8080 HTTP/1.1\\r\\n\\r\\n' >&3; head -1 <&3")
        assert r.stdout.startswith("HTTP/1.1 200 "), r.stdout
        os.kill(k.pid, signal.SIGKILL)
        assert wait_until(lambda: not _proxy_processes_alive(proxies), 10), "the proxy outlived its killed kernel"
        # (and shutdown() below must not send a request to a kernel that is still being reaped)
        assert wait_until(lambda: not k.km.is_alive(), 10)
    finally:
        k.shutdown()


def test_a_forwarded_request_names_the_host_that_was_allowed(wide_open):
    # Another Host would let a shared server (a CDN) answer for a site that is not allowed.
    r = wide_open.run("exec 3<>/dev/tcp/127.0.0.1/3128; printf 'GET http://public.test.example:8080/h HTTP/1.1\\r\\n"
                      "Host: not-allowed.example\\r\\nProxy-Authorization: Basic eDp5\\r\\nX-Kept: 1\\r\\n\\r\\n' >&3; cat <&3")
    body = r.stdout.split("\r\n\r\n", 1)[-1]
    assert body.startswith("GET /h HTTP/1.1\nHost: public.test.example:8080\n"), r.stdout
    assert "not-allowed" not in body and "Proxy-" not in body and "X-Kept: 1\n" in body, body


def test_an_unprotected_kernel_says_the_allowlist_is_not_enforced(tmp_path):
    # Where no sandbox can be built, 'auto' starts unprotected: the warning must not let the
    # user believe the network is filtered.
    k = Kernel(tmp_path, options=["--Sandbox.network=proxy", "--Sandbox.allowed_hosts=pypi.org"], flavor="no-userns")
    try:
        assert "UNPROTECTED" in k.first.stderr and "and every network: Sandbox.allowed_hosts is not enforced" in k.first.stderr, k.first.stderr
        assert "(no sandbox: nothing is filtered, nothing is listed)" in k.run("%sandbox network").stdout
    finally:
        k.shutdown()


@pytest.mark.parametrize("where", ["home", "/"])
@pytest.mark.parametrize("flavor", FLAVORS)
def test_the_proxy_holds_wherever_the_notebook_lives(flavor, where, internet):
    _public, _private, own = internet
    k = _kernel(flavor, internet, ["public.test.example:8080", "*:*"], where=where)
    canary = Canary("127.0.0.1", own)
    try:
        r = k.run("curl -sS http://public.test.example:8080/here\n"
                  + _ask([f"CONNECT localhost:{canary.port} HTTP/1.1", f"CONNECT thishost.test.example:{canary.port} HTTP/1.1"]))
        assert r.stdout.startswith("GET /here HTTP/1.1\n"), r.stdout + r.stderr
        assert r.stdout.splitlines()[-2:] == [f"CONNECT localhost:{canary.port} HTTP/1.1 -> HTTP/1.1 403 Forbidden",
                                              f"CONNECT thishost.test.example:{canary.port} HTTP/1.1 -> HTTP/1.1 403 Forbidden"], r.stdout
        assert canary.arrived == []
    finally:
        canary.close()
        k.shutdown()


def test_a_proxy_that_ended_is_said_and_the_sandbox_stays_closed(internet):
    k = _kernel("root", internet, ["public.test.example:8080"])
    try:
        proxies = _proxy_processes(k)
        assert len(proxies) == 1, proxies
        os.kill(proxies[0], signal.SIGKILL)
        assert wait_until(lambda: not _proxy_processes_alive(proxies), 10)
        status = k.run("%sandbox").stdout
        assert "network:         private namespace, loopback only: no route out (the proxy has ended; restart the kernel)" in status, status
        r = k.run("curl -sS -m 5 http://public.test.example:8080/ 2>&1")
        assert "GET" not in r.stdout and "Failed to connect" in r.stdout, r.stdout
    finally:
        k.shutdown()


def test_the_kernel_serves_nothing_but_a_tcp_listener_on_the_planned_port():
    # (The sandbox's first process passes it before any cell runs; it is checked all the same.)
    from sandbox_kernel.egress import Egress

    def listener(port, kind=socket.SOCK_STREAM, listen=True):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", port))
        if listen:
            s.listen()
        return s.detach()

    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    for fd, why in [(os.open("/dev/null", os.O_RDONLY), "the sandbox passed no socket (Socket operation on non-socket)"),
                    (listener(port, listen=False), f"the sandbox passed no TCP socket listening on 127.0.0.1:{port}"),
                    (listener(port, kind=socket.SOCK_DGRAM, listen=False), f"the sandbox passed no TCP socket listening on 127.0.0.1:{port}"),
                    (listener(0), f"the sandbox passed no TCP socket listening on 127.0.0.1:{port}")]:
        egress = Egress(log=None)
        assert egress.start(fd, port, [], as_root=False) == why
        assert egress.process is None and not egress.env()
