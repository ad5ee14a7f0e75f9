"""``{% router_report server as report %}``: the router panel's data, for templates/includes/router_status.html."""
from django import template

from directory.models import Server
from smtpservice.console.router_status import RouterReport, router_report

register = template.Library()


@register.simple_tag
def router_report_of(server: Server) -> RouterReport:
    return router_report(server)
