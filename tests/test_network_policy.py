"""The proxy's policy (network_policy.py), as a table: which entries parse, what they match, and
which addresses no entry opens. Pure; the acceptance tests are in test_network_proxy.py."""

import pytest

from sandbox_kernel import network_policy as policy


@pytest.mark.parametrize("entry, host, port, allowed", [
    ("pypi.org", "pypi.org", 443, True),
    ("pypi.org", "pypi.org", 80, True),
    ("pypi.org", "pypi.org", 22, False),
    ("pypi.org", "www.pypi.org", 443, False),
    ("pypi.org", "evilpypi.org", 443, False),
    ("*.pythonhosted.org", "files.pythonhosted.org", 443, True),
    ("*.pythonhosted.org", "pythonhosted.org", 443, False),
    ("*.pythonhosted.org", "xpythonhosted.org", 443, False),
    ("github.com:22", "github.com", 22, True),
    ("github.com:22", "github.com", 443, False),
    ("PyPI.org.", "pypi.org", 443, True),
    ("*", "anything.example", 443, True),
    ("*", "10.1.2.3", 443, False),  # a name entry never opens an address
    ("*:*", "anything.example", 5432, True),
    ("10.0.0.0/8:5432", "10.1.2.3", 5432, True),
    ("10.0.0.0/8:5432", "10.1.2.3", 443, False),
    ("10.0.0.0/8:5432", "db.example", 5432, False),
    ("[fd00::/8]:443", "fd12::1", 443, True),
])
def test_an_entry_matches_its_hosts_and_ports_only(entry, host, port, allowed):
    assert (policy.allowing([policy.parse(entry)], host, port) is not None) == allowed


@pytest.mark.parametrize("address, by_name, why", [
    ("127.0.0.1", False, "loopback"), ("::1", False, "loopback"), ("::ffff:127.0.0.1", True, "loopback"),
    ("0.0.0.0", False, "unspecified"), ("::", False, "unspecified"), ("169.254.169.254", False, "link-local"),
    ("fe80::1", False, "link-local"), ("224.0.0.1", False, "multicast"), ("255.255.255.255", False, "reserved"),
    ("10.1.2.3", True, "private"), ("192.168.1.1", True, "private"), ("fd00::1", True, "private"),
    ("100.64.0.1", True, "private"), ("10.1.2.3", False, None), ("151.101.0.223", True, None),
])
def test_addresses_a_name_or_an_entry_may_not_lead_to(address, by_name, why):
    assert policy.refusal(address, by_name) == why


@pytest.mark.parametrize("host, normal", [
    ("Example.COM.", "example.com"), ("[::ffff:127.0.0.1]", "127.0.0.1"), ("[::1]", "::1"), ("2130706433", "2130706433"),
    ("a_b", None), ("[1.2.3.4]", None), ("", None), ("a" * 64 + ".example", None),
])
def test_hosts_are_normalised_before_they_are_matched(host, normal):
    assert policy.host_of(host) == normal


@pytest.mark.parametrize("entry, message", [
    ("a..b", "'a..b' is not a host name, *.name, *, an address or a network"),
    ("pypi.org:0", "'pypi.org:0': '0' is not a port (1-65535, or *)"),
    ("[::1", "'[::1': a '[' without its ']'"),
    ("fd00::1", "'fd00::1': write an IPv6 address in brackets, [fd00::1]"),
    ("*.*.example", "is not a host name"),
    (":443", "names no host"),
])
def test_bad_entries_say_what_is_wrong(entry, message):
    with pytest.raises(policy.PolicyError, match=None) as e:
        policy.parse(entry)
    assert message in str(e.value) and str(e.value).startswith("Sandbox.allowed_hosts: ")
