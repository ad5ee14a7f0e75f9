"""Console pages that explain and verify one server's inbound SMTP: the policy simulator and the self-test.

Both read the settings snapshot the listener itself loads (``load_snapshot``). The simulator changes
nothing and answers a Reader; its form is posted so that a password typed in it never appears in a
URL. The self-test opens real SMTP sessions to the server's own ports, so it needs an Editor.
"""
from dataclasses import replace
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.utils.functional import cached_property
from django.views.decorators.cache import never_cache
from django.views.generic import TemplateView

from directory import roles
from directory.models import Server
from directory.permissions import RoleRequiredMixin
from smtpservice.console import selftest
from smtpservice.console.explain_forms import SimulatorForm
from smtpservice.core import policy, simulator, throttle
from smtpservice.store import throttle as throttles
from smtpservice.store.snapshot import load_snapshot, recent_snapshot


class ServerPageMixin(RoleRequiredMixin):
    """A page about one Server document; the server is looked up after the role check."""

    @cached_property
    def server(self) -> Server:
        return get_object_or_404(Server, pk=self.kwargs["pk"])

    # Settings only: no page here looks a user up, except the simulator's answer (``SimulatorView.post``).
    people_and_groups = False

    @cached_property
    def snapshot(self) -> policy.SettingsSnapshot:
        if self.people_and_groups:
            return recent_snapshot(self.server.name)
        return load_snapshot(self.server.name, people_and_groups=False)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("server", self.server)
        kwargs.setdefault("snapshot", self.snapshot)
        return super().get_context_data(**kwargs)


@method_decorator(never_cache, name="dispatch")
class SimulatorView(ServerPageMixin, TemplateView):
    """The form, and once posted, what the listener would answer that client, step by step."""

    template_name = "explain/simulator.html"
    # Posting changes nothing: a Reader may post, so the password stays out of URLs and logs.
    edit_role = roles.READER

    def get(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        return self.render_to_response(self.get_context_data(form=SimulatorForm(self.snapshot)))

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        self.people_and_groups = True  # the simulation finds the person of a login and checks server access
        form = SimulatorForm(self.snapshot, data=request.POST)
        simulation = None
        if form.is_valid():
            inputs = form.inputs()
            if inputs.login:
                account = throttle.account_for(self.snapshot, inputs.login)
                counts = throttles.counts(inputs.client_ip, account, throttle.DEFAULT_LIMITS.window)
                inputs = replace(inputs, auth_failures=counts)
            simulation = simulator.simulate(self.snapshot, inputs)
        return self.render_to_response(self.get_context_data(form=form, simulation=simulation))


@method_decorator(never_cache, name="dispatch")
class SelfTestView(ServerPageMixin, TemplateView):
    """What the self-test does (any role), and its transcript once an Editor runs it."""

    template_name = "explain/selftest.html"
    edit_role = roles.EDITOR

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("probe_host", selftest.probe_host(self.snapshot))
        kwargs.setdefault("timeout", int(selftest.TIMEOUT))
        return super().get_context_data(**kwargs)

    def post(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        return self.render_to_response(self.get_context_data(result=selftest.run(self.snapshot)))
