"""The network policy (network_policy.py), as a table: which entries parse, what they match, which
addresses no entry opens, and what the private network may not send to; and how egress_guard.py
reads a destination. The acceptance tests are in test_network_proxy.py and test_isolation.py."""

import ipaddress
import socket
import struct

import pytest

from sandbox_kernel import egress_guard
from sandbox_kernel import network_policy as policy


@pytest.mark.parametrize("entry, host, port, tunnel, allowed", [
    ("pypi.org", "pypi.org", 443, True, True),
    ("pypi.org", "pypi.org", 80, False, True),
    ("pypi.org", "pypi.org", 80, True, False),  # a tunnel to port 80 would carry any Host
    ("pypi.org", "pypi.org", 443, False, False),
    ("pypi.org", "pypi.org", 22, True, False),
    ("pypi.org", "www.pypi.org", 443, True, False),
    ("pypi.org", "evilpypi.org", 443, True, False),
    ("*.pythonhosted.org", "files.pythonhosted.org", 443, True, True),
    ("*.pythonhosted.org", "pythonhosted.org", 443, True, False),
    ("*.pythonhosted.org", "xpythonhosted.org", 443, True, False),
    ("github.com:22", "github.com", 22, True, True),
    ("github.com:22", "github.com", 443, True, False),
    ("PyPI.org.", "pypi.org", 443, True, True),
    ("*", "anything.example", 443, True, True),
    ("*", "10.1.2.3", 443, True, False),  # a name entry never opens an address
    ("*:*", "anything.example", 5432, True, True),
    ("10.0.0.0/8:5432", "10.1.2.3", 5432, True, True),
    ("10.0.0.0/8:5432", "10.1.2.3", 443, True, False),
    ("10.0.0.0/8:5432", "db.example", 5432, True, False),
    ("[fd00::/8]:443", "fd12::1", 443, True, True),
])
def test_an_entry_matches_its_hosts_and_ports_only(entry, host, port, tunnel, allowed):
    assert (policy.allowing([policy.parse(entry)], host, port, tunnel) is not None) == allowed


@pytest.mark.parametrize("address, by_name, why", [
    ("127.0.0.1", False, "loopback"), ("::1", False, "loopback"), ("::ffff:127.0.0.1", True, "loopback"),
    ("0.0.0.0", False, "unspecified"), ("::", False, "unspecified"), ("169.254.169.254", False, "link-local"),
    ("fe80::1", False, "link-local"), ("224.0.0.1", False, "multicast"), ("255.255.255.255", False, "reserved"),
    ("10.1.2.3", True, "private"), ("192.168.1.1", True, "private"), ("fd00::1", True, "private"),
    ("100.64.0.1", True, "private"), ("10.1.2.3", False, None), ("151.101.0.223", True, None),
    # IPv6 forms that lead to IPv4: the IPv4 address counts.
    ("64:ff9b::a00:1", True, "private"), ("64:ff9b::a9fe:a9fe", False, "link-local"), ("64:ff9b::9765:df", True, None),
    ("2002:7f00:1::1", False, "loopback"), ("::7f00:1", False, "reserved"), ("64:ff9b:1::1", False, "reserved"),
    ("fd00:ec2::254", False, "cloud metadata"), ("168.63.129.16", True, "cloud metadata"),
    ("100.100.100.200", False, "cloud metadata"),
])
def test_addresses_a_name_or_an_entry_may_not_lead_to(address, by_name, why):
    assert policy.refusal(address, by_name) == why


@pytest.mark.parametrize("host, normal", [
    ("Example.COM.", "example.com"), ("[::ffff:127.0.0.1]", "127.0.0.1"), ("[::1]", "::1"),
    ("a_b", None), ("[1.2.3.4]", None), ("", None), ("a" * 64 + ".example", None),
    # An address written as a name (inet_aton would read it), a zone naming a host interface.
    ("2130706433", None), ("0x7f.1", None), ("010.1.2.3", None), ("127.1", None), ("[fe80::1%eth0]", None),
    ("1e100.net", "1e100.net"),
])
def test_hosts_are_normalised_before_they_are_matched(host, normal):
    assert policy.host_of(host) == normal


@pytest.mark.parametrize("entry, message", [
    ("a..b", "'a..b' is not a host name, *.name, *, an address or a network"),
    ("pypi.org:0", "'pypi.org:0': '0' is not a port (1-65535, or *)"),
    ("pypi.org:²", "is not a port"),
    ("[::1", "'[::1': a '[' without its ']'"),
    ("fd00::1", "'fd00::1': write an IPv6 address in brackets, [fd00::1]"),
    ("*.*.example", "is not a host name"),
    (":443", "names no host"),
])
def test_bad_entries_say_what_is_wrong(entry, message):
    with pytest.raises(policy.PolicyError, match=None) as e:
        policy.parse(entry)
    assert message in str(e.value) and str(e.value).startswith("Sandbox.allowed_hosts: ")


@pytest.mark.parametrize("address, port, why", [
    ("93.184.215.14", 443, None),
    ("10.1.2.3", 5432, None),  # a private network is reached as any machine on it reaches it
    ("127.0.0.1", 8888, "loopback"),
    ("::ffff:127.0.0.1", 8888, "loopback"),
    ("0.0.0.0", 8888, "unspecified"),
    ("169.254.169.254", 80, "link-local"),
    ("fd00:ec2::254", 80, "cloud metadata"),
    ("127.0.0.53", 53, None),  # the host's resolver, where slirp4netns forwards the queries
    ("127.0.0.53", 80, "loopback"),
    ("127.0.0.1", 53, "loopback"),  # not a resolver of the host's
    ("::ffff:127.0.0.53", 53, None),
])
def test_what_the_private_network_may_not_send_to(address, port, why):
    assert policy.outbound_refusal(address, port, {ipaddress.ip_address("127.0.0.53")}) == why


def test_the_hosts_own_addresses_are_those_it_can_bind():
    assert policy.is_own("127.0.0.1") and not policy.is_own("192.0.2.254")
    assert policy.outbound_refusal("192.0.2.254", 80, set()) is None


@pytest.mark.parametrize("sockaddr, destination", [
    (struct.pack("H", socket.AF_INET) + struct.pack("!H", 8080) + socket.inet_aton("10.1.2.3") + bytes(8), ("10.1.2.3", 8080)),
    (struct.pack("H", socket.AF_INET6) + struct.pack("!HI", 53, 0) + socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1") + bytes(4),
     ("::ffff:7f00:1", 53)),
    (struct.pack("HHI", socket.AF_NETLINK, 0, 0) + bytes(4), None),
    (struct.pack("H", socket.AF_UNIX) + b"/run/x\0", None),
    # UDP sends to an AF_UNSPEC address as to an AF_INET one
    (struct.pack("H", socket.AF_UNSPEC) + struct.pack("!H", 8888) + socket.inet_aton("127.0.0.1") + bytes(8), ("127.0.0.1", 8888)),
])
def test_the_guard_reads_the_destination_of_a_call(sockaddr, destination):
    assert egress_guard.destination(sockaddr) == destination


@pytest.mark.parametrize("sockaddr", [
    b"", b"\x02",
    struct.pack("H", socket.AF_INET) + b"\0\x50",  # short
    struct.pack("H", socket.AF_PACKET) + bytes(18),  # a family it does not read
])
def test_an_address_the_guard_cannot_read_is_refused(sockaddr):
    with pytest.raises(ValueError):
        egress_guard.destination(sockaddr)
