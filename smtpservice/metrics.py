"""Prometheus metrics of the listener and the router, and the /metrics endpoint that serves them.

Every metric of both daemons is defined here, named by Prometheus conventions (``smtp_`` prefix, the
daemon, the quantity, the base unit, ``_total`` for counters), so that docs/admin/monitoring.md and the
code name the same things. The daemons call the small functions below (``reply``, ``delivery`` ...),
never prometheus_client directly.

Several processes, one scrape: when ``PROMETHEUS_MULTIPROC_DIR`` names a directory before the process
starts (the systemd units set it to a fresh runtime directory per run, and ``run_directory()`` makes one
for a command that starts workers itself), every process writes its values there and ``serve()`` sums
them (prometheus_client's multiprocess mode). The variable must be set before this module is imported:
prometheus_client chooses how to store values at import time.

This module imports no ORM: the router passes it the numbers it has read.
"""
import argparse
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
NO_RULE = "none"
"""The ``rule`` label of a reply no policy rule decided (a syntax error, a 250 to NOOP)."""

STORE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds to commit a message before its 250: milliseconds normally, seconds when the database struggles."""
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds of one SMTP session to a remote server, connection to the end of DATA."""
ATTEMPT_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
"""Attempts a recipient needed before its final outcome (delivered or failed)."""

# --- listener ---------------------------------------------------------------------------------------

LISTENER_CONNECTIONS = Counter(
    "smtp_listener_connections_total", "TCP connections accepted, per local port.", ["port"])
LISTENER_OPEN_SESSIONS = Gauge(
    "smtp_listener_open_sessions", "SMTP sessions open now, per local port.", ["port"], multiprocess_mode="livesum")
LISTENER_REPLIES = Counter(
    "smtp_listener_replies_total", "Replies sent, by reply code and by the policy rule that decided it.",
    ["code", "rule"])
LISTENER_AUTH = Counter(
    "smtp_listener_auth_total", "AUTH attempts, by result (success or failure).", ["result"])
LISTENER_MESSAGES = Counter(
    "smtp_listener_messages_accepted_total", "Messages accepted with 250 at the end of DATA.")
LISTENER_BYTES = Counter(
    "smtp_listener_accepted_bytes_total", "Bytes of the messages accepted.")
LISTENER_STORE_SECONDS = Histogram(
    "smtp_listener_store_duration_seconds", "Time to store a message in the database before replying 250.",
    buckets=STORE_BUCKETS)
LISTENER_STORE_BATCH = Histogram(
    "smtp_listener_store_batch_messages", "Messages committed together in one transaction (group commit).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500))
LISTENER_SETTINGS_REVISION = Gauge(
    "smtp_listener_settings_revision", "Directory revision of the settings in use (the oldest across processes).",
    multiprocess_mode="livemin")
LISTENER_RELOADS = Counter(
    "smtp_listener_settings_reloads_total", "Times the settings were read again after a directory change.")
LISTENER_BIND_FAILURES = Counter(
    "smtp_listener_bind_failures_total", "Failed attempts to bind an inbound port, per port.", ["port"])

# --- router -----------------------------------------------------------------------------------------

ROUTER_QUEUE = Gauge(
    "smtp_router_queue_recipients", "Recipients in the relay queue, by state (every state, even at zero).",
    ["state"], multiprocess_mode="mostrecent")
ROUTER_OLDEST = Gauge(
    "smtp_router_queue_oldest_age_seconds", "Age of the oldest message still waiting to be sent (0 when none).",
    multiprocess_mode="mostrecent")
ROUTER_DELIVERIES = Counter(
    "smtp_router_deliveries_total", "Recipients whose attempt ended, by outcome (delivered, deferred, failed, held).",
    ["outcome"])
ROUTER_DELIVERY_SECONDS = Histogram(
    "smtp_router_delivery_duration_seconds", "Time of one attempt at a message, connection to the remote's reply.",
    buckets=DELIVERY_BUCKETS)
ROUTER_ATTEMPTS = Histogram(
    "smtp_router_delivery_attempts", "Attempts a recipient took before its final outcome (delivered or failed).",
    buckets=ATTEMPT_BUCKETS)
ROUTER_LAST_PASS = Gauge(
    "smtp_router_last_pass_timestamp_seconds", "Unix time the router last went through the queue.",
    multiprocess_mode="max")
ROUTER_SETTINGS_REVISION = Gauge(
    "smtp_router_settings_revision", "Directory revision of the settings the router uses.",
    multiprocess_mode="livemin")


_children: dict[tuple, object] = {}


def labelled(metric: Counter | Gauge | Histogram, *values: object) -> Counter | Gauge | Histogram:
    """``metric.labels(*values)``, remembered: prometheus_client takes a lock and builds its key on every call, and
    the listener counts every reply. The label values are few (ports, reply codes, policy rules)."""
    key = (id(metric), values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*(str(value) for value in values))
    return child


# --- what the listener calls ------------------------------------------------------------------------

def connection_opened(port: int) -> None:
    """A client connected to ``port`` (before any policy decision: refused connections count too)."""
    labelled(LISTENER_CONNECTIONS, port).inc()


def session_opened(port: int) -> None:
    """A session began on ``port``; pair every call with ``session_closed(port)``."""
    labelled(LISTENER_OPEN_SESSIONS, port).inc()


def session_closed(port: int) -> None:
    labelled(LISTENER_OPEN_SESSIONS, port).dec()


def reply(code: int | str, rule: str = "") -> None:
    """A reply was sent; ``rule`` is the policy rule that decided it (Decision.rule), so a refusal has its reason."""
    labelled(LISTENER_REPLIES, code, rule or NO_RULE).inc()


def auth(succeeded: bool) -> None:
    LISTENER_AUTH.labels("success" if succeeded else "failure").inc()


def message_stored(size: int, seconds: float) -> None:
    """A message of ``size`` bytes was stored in ``seconds`` and accepted with 250."""
    LISTENER_MESSAGES.inc()
    LISTENER_BYTES.inc(size)
    LISTENER_STORE_SECONDS.observe(seconds)


def store_batch(size: int) -> None:
    """One transaction committed ``size`` messages (the listener's group commit)."""
    LISTENER_STORE_BATCH.observe(size)


def settings_loaded(revision: int, reload: bool = True) -> None:
    """The listener now uses the settings of directory ``revision``; ``reload`` is False for the first load."""
    LISTENER_SETTINGS_REVISION.set(revision)
    if reload:
        LISTENER_RELOADS.inc()


def bind_failed(port: int) -> None:
    LISTENER_BIND_FAILURES.labels(str(port)).inc()


# --- what the router calls --------------------------------------------------------------------------

def queue_depth(counts: Mapping[str, int], states: Iterable[str], oldest_age: float | None) -> None:
    """Export the queue by state: every state in ``states``, at zero when ``counts`` has none."""
    for state in states:
        ROUTER_QUEUE.labels(state).set(counts.get(state, 0))
    ROUTER_OLDEST.set(oldest_age or 0)


def delivery(outcome: str, seconds: float, attempts: int, final: bool) -> None:
    """One recipient's attempt ended with ``outcome`` after ``seconds``; ``final`` when it will not be tried again."""
    ROUTER_DELIVERIES.labels(outcome).inc()
    ROUTER_DELIVERY_SECONDS.observe(seconds)
    if final:
        ROUTER_ATTEMPTS.observe(attempts)


def router_pass(timestamp: float, revision: int) -> None:
    ROUTER_LAST_PASS.set(timestamp)
    ROUTER_SETTINGS_REVISION.set(revision)


# --- serving ----------------------------------------------------------------------------------------

def parse_address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--metrics`` (``[::1]:9120`` for IPv6); ValueError in plain words otherwise."""
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"“{value}” is not HOST:PORT, such as 127.0.0.1:9120.")
    return host.strip("[]"), int(port)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--metrics HOST:PORT`` option of runsmtp and runrouter (off by default)."""
    parser.add_argument(
        "--metrics", metavar="HOST:PORT", type=address_argument, default=None,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).",
    )


def address_argument(value: str) -> str:
    """argparse type of ``--metrics``: the address unchanged, or a usage error in plain words."""
    try:
        parse_address(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def registry(directory: str | None = None) -> CollectorRegistry:
    """The registry a scrape reads: the sum over every process of the run in multiprocess mode (``directory``,
    by default PROMETHEUS_MULTIPROC_DIR), else this process's own."""
    directory = directory or os.environ.get(MULTIPROCESS_ENV)
    if not directory:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=directory)
    return combined


def serve(address: str | None, directory: str | None = None) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve /metrics on ``address`` (HOST:PORT) from a daemon thread, or nothing when it is None;
    ``stop(server)`` ends it. OSError when the port cannot be bound. ``directory``: the sums of another
    run's processes (a supervisor's, whose own values stay out of them)."""
    if not address:
        return None
    host, port = parse_address(address)
    return start_http_server(port, addr=host, registry=registry(directory))


def stop(server: tuple[WSGIServer, threading.Thread] | None) -> None:
    """Stop serving, and tell a multiprocess run that this process's live gauges are gone."""
    if server is not None:
        httpd, thread = server
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(os.getpid())


def run_directory(parent: str | None = None) -> Path:
    """A fresh, empty directory for one run of several worker processes: pass it to each in PROMETHEUS_MULTIPROC_DIR.

    Files of an earlier run must not be added to this one's sums, so it is never reused; ``remove_run_directory``
    deletes it when the run ends.
    """
    return Path(tempfile.mkdtemp(prefix="smtp-metrics-", dir=parent))


def remove_run_directory(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
