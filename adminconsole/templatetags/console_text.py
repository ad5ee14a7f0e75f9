"""Small text helpers for templates: a label followed by its colon, as each language writes it."""
from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from django.utils.translation import gettext

register = template.Library()


@register.filter
def colon(label) -> str:
    """“Server:” in English, “Serveur :” (no-break space) in French: the colon belongs to the translated text."""
    return mark_safe(gettext("%(label)s:") % {"label": conditional_escape(label)})
