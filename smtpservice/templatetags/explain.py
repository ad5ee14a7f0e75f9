"""``{% drift_flag server %}``: the dashboard's one-line summary of what a server's listener binds
against what its settings configure (``console.ListenerReport.flag``)."""
from django import template

from smtpservice.console import presenters as console

register = template.Library()


@register.inclusion_tag("explain/drift_flag.html")
def drift_flag(server):
    return {"server": server, "report": console.listener_report(server)}
