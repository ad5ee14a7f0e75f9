"""Console panels of the SMTP service, for pages of other apps: ``{% listener_status server %}`` on the
dashboard and the Server document, ``{% effective_settings server %}`` on the Server document."""
from email.errors import HeaderParseError
from email.header import decode_header, make_header

from django import template

from directory import roles
from smtpservice.console import presenters as console
from smtpservice.core import texts

register = template.Library()


@register.inclusion_tag("includes/listener_status.html", takes_context=True)
def listener_status(context, server, heading_level=2):
    return {
        "server": server, "report": console.listener_report(server), "heading_level": heading_level,
        "can_restore": can_restore(context),
    }


def can_restore(context):
    """May the user viewing the page restore a version of a Server document (its edit role, Editor)?"""
    request = context.get("request")
    return request is not None and roles.has_role(request.user, roles.EDITOR)


@register.inclusion_tag("includes/effective_settings.html")
def effective_settings(server):
    return {"server": server, "effective": console.effective_settings(server)}


@register.filter
def decoded_header(value):
    """A header as stored (RFC 2047 encoded words and all) as the reader should see it."""
    try:
        return str(make_header(decode_header(value or "")))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return value


@register.filter
def stored_text(value):
    """A text a daemon or an action stored, in the reader's language (``smtpservice.core.texts``)."""
    return texts.render(value or "")
