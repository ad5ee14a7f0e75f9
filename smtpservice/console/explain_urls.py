"""URLs of the pages that explain and verify a server's inbound SMTP, named ``explain:<page>``."""
from django.urls import path

from smtpservice.console import explain_views

app_name = "explain"

urlpatterns = [
    path("servers/<int:pk>/simulator/", explain_views.SimulatorView.as_view(), name="simulator"),
    path("servers/<int:pk>/self-test/", explain_views.SelfTestView.as_view(), name="selftest"),
]
