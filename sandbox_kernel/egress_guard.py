"""Keeps slirp4netns off the host itself. It makes the sandbox's outbound connections from the
host's network (Sandbox.network=private), where --disable-host-loopback keeps only the host's
loopback out of reach: through the host's own addresses a cell would reach every service that
listens on all of them (a Jupyter server started with --ip=0.0.0.0, a remote kernel's ports), and
through link-local ones the cloud's metadata and its credentials.

slirp4netns runs under a seccomp filter (isolation.hold_sends_for_review) that holds each of its
connect and send calls to an address until the supervisor, outside, answers: this module reads the
address from the caller's memory, asks the policy (network_policy.outbound_refusal), and lets the
call go on or fails it. slirp4netns is single-threaded: while the call is held, nothing of it can
change the address between the check and the call (a compromised slirp4netns that made threads
could; see the README's threat model). Standard library only: the supervisor imports it.
"""

import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import sys
import threading

# <linux/seccomp.h>: struct seccomp_notif (80 bytes), struct seccomp_notif_resp (24 bytes).
NOTIF = struct.Struct("QII iIQ6Q")
RESPONSE = struct.Struct("QqiI")
# (ID_VALID by its first number, which every kernel with the ioctl takes)
IOCTL_RECV, IOCTL_SEND, IOCTL_ID_VALID = 0xC0502100, 0xC0182101, 0x80082102
FLAG_CONTINUE = 1
MSGHDR_NAME = struct.Struct("QI")  # msg_name, msg_namelen: the start of a struct msghdr
MMSGHDR_SIZE = 64
MAX_MESSAGES = 1024  # of one sendmmsg, as the kernel's UIO_MAXIOV
RESOLV_CONF = "/etc/resolv.conf"


def resolvers():
    """The host's DNS servers, where slirp4netns sends the sandbox's queries (an unspecified one,
    which would stand for every address of the host's, is left out)."""
    found = set()
    try:
        with open(RESOLV_CONF) as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        address = ipaddress.ip_address(words[1].split("%")[0])
                    except ValueError:
                        continue
                    if not address.is_unspecified:
                        found.add(address)
    except OSError:
        pass
    return found


def destination(sockaddr):
    """(address, port) of an inet sockaddr (AF_UNSPEC too: UDP reads it as AF_INET), None for
    netlink and unix ones (slirp4netns's own, which the sandbox cannot name); anything else, or
    too short to read, is a ValueError."""
    family = struct.unpack_from("H", sockaddr)[0] if len(sockaddr) >= 2 else None
    if family in (socket.AF_UNIX, socket.AF_NETLINK):
        return None
    if family in (socket.AF_INET, socket.AF_UNSPEC) and len(sockaddr) >= 8:
        return str(ipaddress.IPv4Address(sockaddr[4:8])), struct.unpack_from("!H", sockaddr, 2)[0]
    if family == socket.AF_INET6 and len(sockaddr) >= 24:
        return str(ipaddress.IPv6Address(sockaddr[8:24])), struct.unpack_from("!H", sockaddr, 2)[0]
    raise ValueError(f"an address of family {family} and {len(sockaddr)} bytes")


class Guard:
    """Answers the held calls of the filter's listener fd until the filtered processes end.
    calls: the held calls' numbers by name; refusal(address, port) says why a destination is
    refused (None: it may be reached)."""

    def __init__(self, listener, calls, refusal):
        self.listener, self.refusal = listener, refusal
        self.names = {number: name for name, number in calls.items()}
        # Held while a call is answered: the supervisor closes the fds it inherited only between
        # two answers, never the ones an answer has open.
        self.busy = threading.Lock()
        self.thread = threading.Thread(target=self.serve, name="egress-guard", daemon=True)
        self.thread.start()

    def serve(self):
        poll = select.poll()
        poll.register(self.listener, select.POLLIN)
        while True:
            events = poll.poll()
            if any(e & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _fd, e in events):
                return  # no filtered process is left
            notif = bytearray(NOTIF.size)
            with self.busy:
                try:
                    fcntl.ioctl(self.listener, IOCTL_RECV, notif)
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.EINTR):
                        continue  # the caller was gone before it was read
                    return
                self.answer(*NOTIF.unpack(notif))

    def answer(self, notif_id, pid, _flags, nr, _arch, _ip, *args):
        name = self.names.get(nr)
        try:
            why = self.why_not(name, pid, args, notif_id)
        except Exception as e:  # noqa: BLE001  (every call gets an answer, or slirp4netns hangs)
            why = f"unreadable ({type(e).__name__}: {e})"
            if not isinstance(e, (OSError, ValueError, struct.error, OverflowError)):
                print(f"sandbox-kernel egress guard: {why}", file=sys.stderr, flush=True)
        error = 0 if why is None else -(errno.ECONNREFUSED if name == "connect" else errno.EACCES)
        response = RESPONSE.pack(notif_id, 0, error, FLAG_CONTINUE if why is None else 0)
        try:
            fcntl.ioctl(self.listener, IOCTL_SEND, response)
        except OSError:
            pass  # the caller is gone

    def why_not(self, name, pid, args, notif_id):
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            read = lambda address, size: os.pread(mem.fileno(), size, address)  # noqa: E731
            if name == "connect":
                addresses = [(args[1], args[2])]
            elif name == "sendto":
                addresses = [(args[4], args[5])]
            elif name == "sendmsg":
                addresses = [MSGHDR_NAME.unpack(read(args[1], MSGHDR_NAME.size))]
            elif name == "sendmmsg":
                count = min(args[2] & 0xFFFFFFFF, MAX_MESSAGES)
                addresses = [MSGHDR_NAME.unpack(read(args[1] + i * MMSGHDR_SIZE, MSGHDR_NAME.size)) for i in range(count)]
            else:
                return f"an unexpected call {name}"
            found = [destination(read(pointer, min(length & 0xFFFFFFFF, 128))) for pointer, length in addresses if pointer]
        # What was read belongs to the caller only if it is still waiting in this call.
        fcntl.ioctl(self.listener, IOCTL_ID_VALID, struct.pack("Q", notif_id))
        return next((why for d in found if d and (why := self.refusal(*d))), None)
