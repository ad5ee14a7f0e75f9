"""``{% drift_flag server %}``: the dashboard's one-line summary of what a server's listener binds
against what its settings configure (``console.ListenerReport.flag``)."""
from typing import Any

from django import template

from directory.models import Server
from smtpservice.console import presenters as console

register = template.Library()


@register.inclusion_tag("explain/drift_flag.html")
def drift_flag(server: Server) -> dict[str, Any]:
    return {"server": server, "report": console.listener_report(server)}
