"""The ``--metrics HOST:PORT`` option shared by runsmtp and runrouter."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from smtpservice import metrics

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer


def serve_metrics(address: str | None) -> tuple[WSGIServer, threading.Thread] | None:
    """Start serving /metrics on ``address`` (nothing when None); a port that cannot be bound stops the command."""
    try:
        return metrics.serve(address)
    except OSError as error:
        raise CommandError(_("Metrics cannot be served on %(address)s: %(error)s") % {
            "address": address, "error": error.strerror or error,
        }) from None
