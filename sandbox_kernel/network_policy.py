"""Where the sandbox may connect. With Sandbox.network=proxy: the entries of Sandbox.allowed_hosts,
and the addresses no entry can open. With Sandbox.network=private: what slirp4netns may not send
to for it (outbound_refusal). Standard library only: egress_proxy.py and the supervisor, processes
of their own started with `python -I -S`, import it.

An entry names a host and, after a colon, a port (`*`: any; without one, http:// requests to port
80 and tunnels (CONNECT) to port 443):
    pypi.org    *.pythonhosted.org    github.com:22    *    10.1.2.3    10.0.0.0/8:5432    [fd00::/8]:443
A name matches itself only; `*.name` matches the names below it; `*` matches every name. A name is
resolved by the proxy, outside, and only to public addresses: a name cannot lead to the host's
own services or into a private network, whatever its DNS says. Private addresses are reached
only through an entry that is an address or a network.
"""

import dataclasses
import errno
import ipaddress
import re
import socket

DEFAULT_PORTS = "default"  # port 80 for http:// requests, 443 for tunnels
LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# The machine's own metadata services outside link-local: they hand out its credentials.
METADATA = {ipaddress.ip_address(a) for a in ("fd00:ec2::254", "168.63.129.16", "100.100.100.200")}
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # (the IPv4 address it reaches is in its last 32 bits)

# Addresses no entry opens, not even one naming them: the host itself and what only it may reach.
NEVER = (
    ("loopback", lambda a: a.is_loopback),  # Jupyter's 8888, the kernel's ports, local APIs
    ("unspecified", lambda a: a.is_unspecified),  # 0.0.0.0 and :: reach the host's own listeners
    ("link-local", lambda a: a.is_link_local),  # 169.254.169.254: cloud metadata and its credentials
    ("cloud metadata", lambda a: a in METADATA),  # AWS's over IPv6, Azure's WireServer, Alibaba's
    ("multicast", lambda a: a.is_multicast),
    ("reserved", lambda a: a.is_reserved),  # 240/4, ::/8 (IPv4-compatible), local-use NAT64, ...
)


class PolicyError(ValueError):
    """An entry of Sandbox.allowed_hosts that cannot be read; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Entry:
    text: str
    name: str | None = None  # "pypi.org", "*.example.com" or "*"
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    ports: tuple | str | None = DEFAULT_PORTS  # None: any

    def matches(self, host, port, tunnel):
        if self.ports == DEFAULT_PORTS:
            if port != (443 if tunnel else 80):
                return False
        elif self.ports is not None and port not in self.ports:
            return False
        if self.network is not None:
            address = literal(host)
            return address is not None and address in self.network
        if literal(host) is not None:
            return False  # an address is opened by an address entry only
        if self.name == "*":
            return True
        if self.name.startswith("*."):
            return host.endswith(self.name[1:])
        return host == self.name


def parse(text):
    """One entry of Sandbox.allowed_hosts, or PolicyError saying what is wrong with it."""
    entry = text.strip().lower()
    where, ports = entry, DEFAULT_PORTS
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            raise PolicyError(f"Sandbox.allowed_hosts: {text!r}: a '[' without its ']'")
        where, rest = entry[1:close], entry[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise PolicyError(f"Sandbox.allowed_hosts: {text!r}: only ':PORT' may follow ']'")
            ports = _ports(text, rest[1:])
    elif entry.count(":") > 1:
        raise PolicyError(f"Sandbox.allowed_hosts: {text!r}: write an IPv6 address in brackets, [{entry}]")
    elif ":" in entry:
        where, _, port = entry.rpartition(":")
        ports = _ports(text, port)
    if not where:
        raise PolicyError(f"Sandbox.allowed_hosts: {text!r} names no host")
    try:
        network = ipaddress.ip_network(where, strict=False)
    except ValueError:
        network = None
    if network is not None:
        if entry.startswith("[") != (network.version == 6):
            raise PolicyError(f"Sandbox.allowed_hosts: {text!r}: write an IPv6 address in brackets, [{where}]")
        return Entry(text, network=network, ports=ports)
    return Entry(text, name=_name(text, where), ports=ports)


def _ports(text, port):
    if port == "*":
        return None
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise PolicyError(f"Sandbox.allowed_hosts: {text!r}: {port!r} is not a port (1-65535, or *)")
    return (int(port),)


def _name(text, name):
    if name == "*":
        return name
    labels = name.removeprefix("*.").rstrip(".").split(".")
    if len(name) > 253 or not all(LABEL.fullmatch(label) for label in labels):
        raise PolicyError(f"Sandbox.allowed_hosts: {text!r} is not a host name, *.name, *, an address or a network")
    return ("*." if name.startswith("*.") else "") + ".".join(labels)


def host_of(text):
    """A host as a request names it, normalised (lower case, no trailing dot, no brackets, an
    IPv4-mapped address as IPv4), or None if it is no host name and no address."""
    host = text.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            return None
    if "%" in host:
        return None  # a zone (fe80::1%eth0) names an interface of the host's
    address = literal(host)
    if address is not None:
        return str(address.ipv4_mapped or address) if address.version == 6 else str(address)
    host = host.rstrip(".")
    if not (len(host) <= 253 and all(LABEL.fullmatch(label) for label in host.split("."))):
        return None
    try:
        socket.inet_aton(host)  # 2130706433, 0x7f.1, 010.1.2.3: an address written as a name
        return None
    except OSError:
        return host


def literal(host):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def allowing(entries, host, port, tunnel):
    """The first entry that lets the sandbox ask for host:port (tunnel: by CONNECT), or None."""
    return next((e for e in entries if e.matches(host, port, tunnel)), None)


def _leads_to(address):
    """Where an IPv6 address leads to an IPv4 one (mapped, NAT64, 6to4), that one."""
    address = ipaddress.ip_address(address)
    if address.version == 6:
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        return address.ipv4_mapped or address.sixtofour or address
    return address


def _never(address):
    return next((why for why, test in NEVER if test(address)), None)


def refusal(address, by_name):
    """Why the proxy may not connect to this address (None: it may). A name resolves to public
    addresses only; an address entry may open a private one, never the host's own (is_own)."""
    address = _leads_to(address)
    why = _never(address)
    if why is None and by_name and not address.is_global:
        return "private"
    return why


def outbound_refusal(address, port, resolvers):
    """Why slirp4netns may not send to address:port for the sandbox (Sandbox.network=private),
    None if it may: as any machine on the network, nothing of the host's own and nothing only the
    host may reach, but its DNS servers (resolvers) on port 53, where it forwards the sandbox's
    queries (127.0.0.53 on a host with systemd-resolved)."""
    address = _leads_to(address)
    if port == 53 and address in {_leads_to(r) for r in resolvers}:
        return None
    return _never(address) or ("the host's own address" if is_own(str(address)) else None)


def is_own(address):
    """Whether the address is one of this host's (it can be bound here): through it a cell would
    reach every service of the host that listens on all addresses."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError as e:
            return e.errno != errno.EADDRNOTAVAIL  # anything but "not ours": count it as ours
        return True
