"""Enterprise Gateway's kernel-launcher contract, for its remote process proxies
(DistributedProcessProxy over SSH, and those like it): `python -m sandbox_kernel launch` picks
the kernel's ports, starts the kernel on them, sends the connection info to the gateway's response
address encrypted as the gateway asks (an AES key under its RSA public key), and serves the
gateway's requests on a port of its own until the kernel ends.

The kernel is a child in this process group (the gateway kills the group) that dies with this
process (PR_SET_PDEATHSIG). Of the gateway's requests only a poll (signal 0), SIGTERM, SIGKILL and
shutdown are carried out: interrupts are messages (the kernelspec's interrupt_mode). Requests are
taken only from loopback and the gateway's host, since whoever reaches the port could otherwise end
the kernel."""

import argparse
import asyncio
import base64
import ctypes
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile

from jupyter_client.connect import write_connection_file

PAYLOAD_VERSION = 1  # the format of the connection info the gateway reads
SIGNALS = {0, signal.SIGTERM, signal.SIGKILL}
REQUEST_LIMIT = 4096  # bytes of one request (they are a few)
REQUEST_TIMEOUT = 5  # seconds for a request to arrive whole
STOP_GRACE = 5  # seconds between SIGTERM and SIGKILL on shutdown
KERNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PR_SET_PDEATHSIG = 1


class LaunchError(Exception):
    """What stops the launch; the message is one line."""


def say(text):
    print(f"sandbox-kernel launch: {text}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        say(message)
        sys.exit(2)


def _arguments(argv):
    parser = _Parser(
        prog="python -m sandbox_kernel launch",
        description="Start the sandbox kernel for Enterprise Gateway (its kernelspec's argv runs this); "
        "arguments it does not know go to the kernel (--Sandbox.network=proxy ...).")
    # The gateway's own names, and the older --RemoteProcessProxy.* spellings its kernelspecs use.
    for name, help_text in (("kernel-id", "the gateway's id of the kernel"),
                            ("response-address", "IP:PORT where the gateway waits for the connection info"),
                            ("public-key", "the gateway's RSA public key (base64 DER), for the connection info"),
                            ("port-range", "LOWER..UPPER for the kernel's ports and this launcher's (0..0: any)")):
        parser.add_argument(f"--{name}", f"--RemoteProcessProxy.{name}", dest=name.replace("-", "_"), help=help_text)
    parser.add_argument("--ip", default="0.0.0.0", help="the address the kernel's ports listen on (default: all)")
    args, kernel_options = parser.parse_known_args(argv)
    for option in kernel_options:
        if not option.startswith("--") or "=" not in option:
            parser.error(f"unknown argument {option!r} (kernel options go as --Class.option=value)")
    for name in ("kernel_id", "response_address", "public_key"):
        if not getattr(args, name):
            parser.error(f"--{name.replace('_', '-')} is required (the gateway fills it in)")
    if not KERNEL_ID.fullmatch(args.kernel_id):
        parser.error(f"--kernel-id {args.kernel_id!r} is not a kernel id")
    return args, kernel_options


def _response_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(f"--response-address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _port_range(text):
    if not text:
        return 0, 0
    lower, sep, upper = text.partition("..")
    if not sep or not lower.isdigit() or not upper.isdigit() or int(lower) > int(upper) or int(upper) > 65535:
        raise LaunchError(f"--port-range {text!r} is not LOWER..UPPER")
    return int(lower), int(upper)


def _bind(ip, lower, upper):
    """A TCP socket bound in the range (anywhere for 0..0), with the gateway's count of retries."""
    retries = int(os.environ.get("EG_MAX_PORT_RANGE_RETRIES", "5") or 5)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(retries + 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((ip, 0 if upper == 0 else random.randint(lower, upper)))
            return sock
        except OSError:
            sock.close()
    raise LaunchError(f"no free port in {lower}..{upper} on {ip} after {retries + 1} tries")


def _public_key(text):
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        raise LaunchError("needs the 'cryptography' package: pip install 'sandbox-kernel[gateway]'") from None
    try:
        key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except ValueError:
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise LaunchError("--public-key is not a base64 RSA public key")
    return key


def _encrypt(info, gateway_key):
    """The payload the gateway reads: the info under a fresh AES key (ECB, PKCS#7: the gateway's
    format), the key under the gateway's RSA key (PKCS#1 v1.5), all base64 JSON."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    aes_key = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(aes_key), modes.ECB()).encryptor()
    sealed = encryptor.update(padder.update(info) + padder.finalize()) + encryptor.finalize()
    payload = {"version": PAYLOAD_VERSION, "key": base64.b64encode(gateway_key.encrypt(aes_key, rsa_padding.PKCS1v15())).decode(),
               "conn_info": base64.b64encode(sealed).decode()}
    return base64.b64encode(json.dumps(payload).encode())


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Launcher:
    def __init__(self, args, kernel_options):
        self.args, self.kernel_options = args, kernel_options
        self.response_host, self.response_port = _response_address(args.response_address)
        self.lower, self.upper = _port_range(args.port_range)
        self.gateway_key = _public_key(args.public_key)
        self.kernel = None
        self.gateway_addresses = set()

    async def run(self):
        cwd = os.environ.get("KERNEL_WORKING_DIR") or os.getcwd()
        if not os.path.isdir(cwd):
            raise LaunchError(f"KERNEL_WORKING_DIR {cwd!r} is not a directory")
        private = tempfile.mkdtemp(prefix="sandbox-kernel-launch-")  # 0700: the key is in it
        try:
            comm = _bind(self.args.ip, self.lower, self.upper)
            kernel_sockets = [_bind(self.args.ip, self.lower, self.upper) for _ in range(5)]
            ports = [s.getsockname()[1] for s in kernel_sockets]
            connection_file = os.path.join(private, f"kernel-{self.args.kernel_id}.json")
            _fname, info = write_connection_file(
                connection_file, ip=self.args.ip, key=secrets.token_hex(32).encode(), shell_port=ports[0],
                iopub_port=ports[1], stdin_port=ports[2], hb_port=ports[3], control_port=ports[4])
            for s in kernel_sockets:  # the kernel binds them itself, now
                s.close()
            self.kernel = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "sandbox_kernel", "-f", connection_file, *self.kernel_options,
                cwd=cwd, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, self._forward, signal.SIGTERM)
            loop.add_signal_handler(signal.SIGINT, lambda: None)  # the kernel's interrupts are messages
            comm.listen(16)
            server = await asyncio.start_server(self._request, sock=comm)
            self.gateway_addresses = await self._gateway_addresses()
            await self._send_connection_info(info, comm.getsockname()[1])
            async with server:
                status = await self.kernel.wait()
            return 0 if status == 0 else 1
        finally:
            if self.kernel and self.kernel.returncode is None:
                self.kernel.kill()
            shutil.rmtree(private, ignore_errors=True)

    async def _gateway_addresses(self):
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(self.response_host, self.response_port, type=socket.SOCK_STREAM)
        except OSError as e:
            raise LaunchError(f"cannot resolve the gateway's host {self.response_host!r}: {e}") from None
        return {ipaddress.ip_address(a[4][0].split("%")[0]) for a in found}

    async def _send_connection_info(self, info, comm_port):
        info = {**info, "pid": os.getpid(), "pgid": os.getpgid(0), "comm_port": comm_port, "kernel_id": self.args.kernel_id}
        payload = _encrypt(json.dumps(info).encode(), self.gateway_key)
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(self.response_host, self.response_port), 30)
            writer.write(payload)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (OSError, asyncio.TimeoutError) as e:
            raise LaunchError(f"cannot send the connection info to {self.args.response_address}: {e or 'timed out'}") from None
        say(f"kernel {self.args.kernel_id} started (pid {self.kernel.pid}); gateway requests on port {comm_port}")

    def _forward(self, signum):
        if self.kernel.returncode is None:
            self.kernel.send_signal(signum)

    def _from_gateway(self, peer):
        address = ipaddress.ip_address(peer[0].split("%")[0])
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        return address.is_loopback or address in self.gateway_addresses

    async def _request(self, reader, writer):
        """One request of the gateway's: JSON read to the end of the connection."""
        try:
            peer = writer.get_extra_info("peername")
            if not self._from_gateway(peer):
                say(f"refused a request from {peer[0]}: not the gateway's host")
                return
            data = await asyncio.wait_for(reader.read(REQUEST_LIMIT + 1), REQUEST_TIMEOUT)
            while data and len(data) <= REQUEST_LIMIT:
                more = await asyncio.wait_for(reader.read(REQUEST_LIMIT + 1), REQUEST_TIMEOUT)
                if not more:
                    break
                data += more
            request = json.loads(data) if 0 < len(data) <= REQUEST_LIMIT else None
            if not isinstance(request, dict):
                say("ignored a request that is not a JSON object of at most 4 KiB")
                return
            await self._carry_out(request)
        except (OSError, ValueError, asyncio.TimeoutError) as e:
            say(f"ignored a request: {e or 'timed out'}")
        finally:
            writer.close()

    async def _carry_out(self, request):
        signum = request.get("signum")
        if signum is not None:
            if not isinstance(signum, int) or signum not in SIGNALS:
                say(f"ignored signal {signum!r}: only 0, SIGTERM and SIGKILL are carried out")
            elif signum:
                self._forward(signum)
        if request.get("shutdown"):
            self._forward(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.kernel.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                self._forward(signal.SIGKILL)


def main(argv):
    args, kernel_options = _arguments(argv)
    try:
        launcher = Launcher(args, kernel_options)
        return asyncio.run(launcher.run())
    except LaunchError as e:
        say(str(e))
        return 2
