"""The console page of AUTH throttles and blocks: who is slowed or refused now, and a Manager's lift."""
import logging

from django import forms
from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.generic import TemplateView

from directory import roles
from smtpservice.console.views import SESSIONS, ConsolePageMixin
from smtpservice.core import throttle
from smtpservice.store import throttle as throttles

log = logging.getLogger("smtpservice.listener")

KEY_LABELS = {
    throttle.PAIR: _("Account from one address"),
    throttle.ADDRESS: _("Address"),
    throttle.ACCOUNT: _("Account"),
}


class LiftForm(forms.Form):
    """Which failures to forget: an address, an account, or an account from an address."""

    client_address = forms.GenericIPAddressField(required=False, label=_("Client address"))
    account = forms.CharField(required=False, max_length=throttles.ACCOUNT_LENGTH, label=_("Account"))

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("client_address") and not cleaned.get("account"):
            raise forms.ValidationError(_("Name an address, an account, or both."), code="nothing_to_lift")
        return cleaned


class ThrottleListView(ConsolePageMixin, TemplateView):
    """Reader sees the throttles and blocks in force; a Manager lifts one (its failures are forgotten)."""

    template_name = "smtpservice/throttle_list.html"
    nav_section = SESSIONS
    edit_role = roles.MANAGER

    def get_context_data(self, **kwargs: object) -> dict:
        limits = throttle.DEFAULT_LIMITS
        rows = [
            {"throttle": item, "label": KEY_LABELS[item.key]} for item in throttles.current_throttles(limits)
        ]
        kwargs.setdefault("rows", rows)
        kwargs.setdefault("limits", limits)
        kwargs.setdefault("window_minutes", int(limits.window // 60))
        return super().get_context_data(**kwargs)

    def post(self, request: object, *args: object, **kwargs: object) -> object:
        form = LiftForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return redirect("smtpservice:throttle-list")
        client, account = form.cleaned_data["client_address"] or "", form.cleaned_data["account"]
        count = throttles.lift(client, account)
        log.info("user-%s lifted the AUTH throttle of %s %s: %s failures forgotten", request.user.username,
                 client or "*", account or "*", count)
        messages.success(request, ngettext(
            "Throttle lifted: %(count)s failed authentication forgotten.",
            "Throttle lifted: %(count)s failed authentications forgotten.", count,
        ) % {"count": count})
        return redirect("smtpservice:throttle-list")
