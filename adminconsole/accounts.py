"""Console accounts: Managers disable, delete and reset the password of console users; anyone turns on
two-factor authentication (TOTP through django-otp) for their own account, and a setting makes it
required for Managers (``CONSOLE_TOTP_REQUIRED_FOR_MANAGERS``). Every change is in the audit trail.
"""
from base64 import b32encode

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.generic import TemplateView
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from directory import roles
from directory.models import AuditEntry
from directory.permissions import RoleRequiredMixin

USER_DOCUMENT_TYPE = "user"
TWO_FACTOR = "two_factor"
ACTIVE = "active"


def audit_user(by, user, changes: dict, action: str = AuditEntry.Action.CHANGE) -> None:
    """Record a change to a console account in the audit trail, like a document change."""
    AuditEntry.objects.create(
        user=by, actor=by.get_username(), action=action, document_type=USER_DOCUMENT_TYPE,
        object_id=str(user.pk), object_repr=user.get_username(), changes=changes,
    )


# --- Login with a one-time code ----------------------------------------------------------------


class ConsoleAuthenticationForm(AuthenticationForm):
    """Name and password, and the one-time code of users who turned two-factor authentication on."""

    otp_token = forms.CharField(
        label=_("One-time code"), required=False, max_length=8,
        help_text=_("Only if two-factor authentication is on for your account: the 6 digits your authenticator app shows."),
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def clean(self):
        cleaned = super().clean()
        user = self.get_user()
        if user is not None and user_has_device(user):
            token = (cleaned.get("otp_token") or "").strip()
            device = match_token(user, token) if token else None
            if device is None:
                raise forms.ValidationError(
                    _("Two-factor authentication is on for this account: enter the current one-time code."), code="otp",
                )
            # django-otp marks the session verified when auth.login sees this attribute.
            user.otp_device = device
        return cleaned


class ConsoleLoginView(LoginView):
    authentication_form = ConsoleAuthenticationForm
    redirect_authenticated_user = True


# --- Two-factor authentication of one's own account --------------------------------------------


def two_factor_required(user) -> bool:
    return settings.CONSOLE_TOTP_REQUIRED_FOR_MANAGERS and roles.role_of(user) == roles.MANAGER


class TwoFactorRequiredMiddleware:
    """With ``CONSOLE_TOTP_REQUIRED_FOR_MANAGERS``, a Manager not verified by a one-time code sees only the set-up page."""

    ALLOWED = ("two-factor", "logout", "set_language", "login")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            user is not None and user.is_authenticated and two_factor_required(user) and not user.is_verified()
            and request.path_info not in {reverse(name) for name in self.ALLOWED}
            and not request.path_info.startswith(settings.STATIC_URL)
        ):
            return redirect("two-factor")
        return self.get_response(request)


class CodeForm(forms.Form):
    code = forms.CharField(label=_("Code from your authenticator app"), max_length=8,
                           widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}))


class TwoFactorView(RoleRequiredMixin, TemplateView):
    """Turn TOTP on (type the key, confirm with one code) or off, for the signed-in user: any console role."""

    template_name = "adminconsole/two_factor.html"
    read_role = edit_role = roles.READER

    def pending_device(self) -> TOTPDevice:
        device = TOTPDevice.objects.filter(user=self.request.user, confirmed=False).first()
        return device or TOTPDevice.objects.create(user=self.request.user, name="console", confirmed=False)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        context["enabled"] = user_has_device(user)
        context["required"] = two_factor_required(user)
        if not context["enabled"]:
            device = self.pending_device()
            context["key"] = b32encode(device.bin_key).decode()
            context["config_url"] = device.config_url
            context.setdefault("form", CodeForm())
        return context

    def post(self, request):
        user = request.user
        if request.POST.get("action") == "disable":
            if two_factor_required(user):
                messages.error(request, gettext("Managers must use two-factor authentication here: it cannot be turned off."))
            else:
                with transaction.atomic():
                    TOTPDevice.objects.filter(user=user).delete()
                    audit_user(user, user, {TWO_FACTOR: [True, False]})
                messages.success(request, gettext("Two-factor authentication is off for your account."))
            return redirect("two-factor")
        form = CodeForm(request.POST)
        device = self.pending_device()
        if form.is_valid() and device.verify_token(form.cleaned_data["code"].strip()):
            with transaction.atomic():
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                audit_user(user, user, {TWO_FACTOR: [False, True]})
            otp_login(request, device)
            messages.success(request, gettext("Two-factor authentication is on: from now on, log in with a one-time code too."))
            return redirect("dashboard")
        if form.is_valid():
            form.add_error("code", gettext("This code is not the current one. Check the time of your device and try again."))
        return self.render_to_response(self.get_context_data(form=form))


# --- Managers manage console users ---------------------------------------------------------------


class UserManageView(RoleRequiredMixin, TemplateView):
    """One console user: disable or enable, delete, reset the password, reset two-factor authentication.

    A Manager cannot act on their own account nor on a superuser's here, so the console always keeps a Manager.
    """

    template_name = "adminconsole/user_manage.html"
    read_role = edit_role = roles.MANAGER
    edit_page = True
    ACTIONS = ("disable", "enable", "delete", "password", "reset_two_factor")

    @cached_property
    def target(self):
        return get_object_or_404(User, pk=self.kwargs["pk"])

    @property
    def protected(self) -> bool:
        return self.target.is_superuser or self.target == self.request.user

    def get_context_data(self, **kwargs):
        kwargs.setdefault("target", self.target)
        kwargs.setdefault("password_form", SetPasswordForm(self.target))
        kwargs.setdefault("protected", self.protected)
        kwargs.setdefault("two_factor", user_has_device(self.target))
        kwargs.setdefault("role", roles.LABELS.get(roles.role_of(self.target), gettext("No access")))
        return super().get_context_data(**kwargs)

    def post(self, request, pk):
        action = request.POST.get("action")
        if action not in self.ACTIONS:
            return redirect("user-manage", pk=pk)
        if self.protected:
            messages.error(request, gettext("%(user)s cannot be changed here.") % {"user": self.target})
            return redirect("user-list")
        target, by = self.target, request.user
        if action == "password":
            form = SetPasswordForm(target, request.POST)
            if not form.is_valid():
                return self.render_to_response(self.get_context_data(password_form=form))
            with transaction.atomic():
                form.save()
                audit_user(by, target, {"password": ["***", "***"]})
            messages.success(request, gettext("The password of %(user)s was reset.") % {"user": target})
            return redirect("user-manage", pk=pk)
        with transaction.atomic():
            if action == "delete":
                audit_user(by, target, {}, AuditEntry.Action.DELETE)
                target.delete()
            elif action == "reset_two_factor":
                TOTPDevice.objects.filter(user=target).delete()
                audit_user(by, target, {TWO_FACTOR: [True, False]})
            else:
                active = action == "enable"
                target.is_active = active
                target.save(update_fields=["is_active"])
                audit_user(by, target, {ACTIVE: [not active, active]})
        messages.success(request, {
            "delete": gettext("The console user %(user)s was deleted."),
            "reset_two_factor": gettext("Two-factor authentication of %(user)s was reset: they log in with their password and may set it up again."),
            "disable": gettext("%(user)s is disabled and can no longer log in."),
            "enable": gettext("%(user)s can log in again."),
        }[action] % {"user": target.get_username()})
        return redirect("user-list" if action == "delete" else "user-manage", **({} if action == "delete" else {"pk": pk}))
