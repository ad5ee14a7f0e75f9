"""The client's host name, for host list entries written as names (spec 3.2, 3.3; docs/security.md).

A name counts only when it is confirmed: the reverse lookup (PTR) of the client's address gives a name
whose forward lookup (A/AAAA) gives that address back ("forward-confirmed reverse DNS", as Postfix's
``reject_unknown_client_hostname``), so whoever controls a PTR record cannot claim someone else's name.
Lookups use the system resolver (``/etc/hosts`` included) in a small thread pool, off the event loop,
each bounded by ``timeout``; a failed or slow lookup means "no name" and never delays the greeting past
the timeout. Results are cached. The listener asks only when ``needs_names`` says an entry in force is a
name, so a directory of addresses pays nothing.
"""
import asyncio
import collections
import ipaddress
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from smtpservice.core import policy

log = logging.getLogger("smtpservice.listener")

TIMEOUT = 2.0
"""Seconds a lookup may take before the client is taken as having no name."""
CACHE_SECONDS = 300.0
"""How long an answer (a name or none) is kept."""
CACHE_SIZE = 10_000
LOOKUP_THREADS = 4
"""Lookups at once; a lookup still running after its timeout keeps its thread until the resolver gives up."""

_pool = ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="smtp-resolve")
_cache: "collections.OrderedDict[str, tuple[float, str | None]]" = collections.OrderedDict()


def confirmed_name(ip: str) -> str | None:
    """Blocking: the PTR name of ``ip`` if its forward lookup gives ``ip`` back, else None."""
    try:
        address = ipaddress.ip_address(ip)
        name = socket.gethostbyaddr(str(address))[0]
    except (OSError, ValueError, UnicodeError):
        return None
    return name.rstrip(".").lower() if address in addresses_of(name) else None


async def client_name(ip: str, timeout: float = TIMEOUT) -> str | None:
    """The confirmed host name of ``ip``, or None when it has none, the lookup failed or took longer than
    ``timeout`` seconds. Cached for ``CACHE_SECONDS``, answers of "no name" included."""
    now = time.monotonic()
    cached = _cache.get(ip)
    if cached and cached[0] > now:
        _cache.move_to_end(ip)
        return cached[1]
    loop = asyncio.get_running_loop()
    try:
        name = await asyncio.wait_for(loop.run_in_executor(_pool, confirmed_name, ip), timeout)
    except TimeoutError:
        log.info("the host name of %s was not found within %s s: taken as none", ip, timeout)
        name = None
    _cache[ip] = (time.monotonic() + CACHE_SECONDS, name)
    _cache.move_to_end(ip)
    while len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return name


def clear_cache() -> None:
    """Forget every cached answer (the settings changed the names that matter, or a test starts clean)."""
    _cache.clear()


def addresses_of(name: str) -> frozenset:
    """Blocking: the addresses a host name's forward lookup gives (none when it fails)."""
    try:
        return frozenset(
            ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        )
    except (OSError, ValueError, UnicodeError):
        return frozenset()


def mapped_names(snap: policy.SettingsSnapshot) -> tuple[str, ...]:
    """The host names (not addresses, not ``*``) that the server's Internet Sites are mapped to, in site order."""
    names = (entry.strip().rstrip(".").lower() for site in snap.sites for entry in site.mapped_addresses)
    return tuple(dict.fromkeys(name for name in names if name != "*" and not policy.is_address_entry(name)))


async def local_name(local_ip: str, names: tuple[str, ...], timeout: float = TIMEOUT) -> str | None:
    """The first of ``names`` (``mapped_names``) whose forward lookup gives ``local_ip``: the name the client
    connected to, for Internet Sites mapped by host name (spec 3.2). None when none does, a lookup fails, or
    the lookups take longer than ``timeout`` in all. Answers are cached as ``client_name``'s."""
    if not names:
        return None
    try:
        wanted = ipaddress.ip_address(local_ip)
    except ValueError:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for name in names:
        key = f"name:{name.lower()}"
        cached = _cache.get(key)
        if cached and cached[0] > time.monotonic():
            found = cached[1]
        else:
            try:
                found = await asyncio.wait_for(loop.run_in_executor(_pool, addresses_of, name), max(0.0, deadline - loop.time()))
            except TimeoutError:
                log.info("the addresses of %s were not found in time: no local host name for %s", name, local_ip)
                return None
            _cache[key] = (time.monotonic() + CACHE_SECONDS, found)
        if wanted in found:
            return name.rstrip(".").lower()
    return None


def needs_names(snap: policy.SettingsSnapshot) -> bool:
    """True only when some host list entry in force is a name (or a ``.domain`` suffix): connection
    allow/deny always; Internal hosts with anti-relay enforcement External hosts; exclusions unless None."""
    config = snap.config
    lists = [config.connection_allow_hosts, config.connection_deny_hosts]
    if config.anti_relay_enforcement == policy.ENFORCE_EXTERNAL:
        lists.append(config.internal_hosts)
    if config.anti_relay_enforcement != policy.ENFORCE_NONE:
        lists.append(config.anti_relay_exclude_hosts)
    return any(not policy.is_address_entry(entry) for entries in lists for entry in entries)
