"""The functions the listener calls (smtpservice.metrics), as a scrape of /metrics shows them: names and
labels by Prometheus conventions, a refusal counted with its rule."""
import pytest

from smtpservice import metrics
from tests.deploy.conftest import scrape
from tests.smtpservice.conftest import free_port


@pytest.fixture
def served():
    """/metrics of this process on a free port: (port, a scrape before anything was recorded)."""
    port = free_port()
    server = metrics.serve(f"127.0.0.1:{port}")
    yield port, scrape(port)
    metrics.stop(server)


def delta(after, before, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def test_listener_functions_appear_in_a_scrape_with_their_labels(served):
    port, before = served
    metrics.connection_opened(2525)
    metrics.session_opened(2525)
    metrics.reply(250)
    metrics.reply("554", "relay_allow_domains")
    metrics.auth(False)
    metrics.auth(True)
    metrics.message_stored(1234, 0.02)
    metrics.settings_loaded(41, reload=False)
    metrics.settings_loaded(42)
    metrics.bind_failed(25)

    after = scrape(port)

    assert delta(after, before, "smtp_listener_connections_total", port="2525") == 1
    assert delta(after, before, "smtp_listener_open_sessions", port="2525") == 1
    assert delta(after, before, "smtp_listener_replies_total", code="554", rule="relay_allow_domains") == 1
    assert delta(after, before, "smtp_listener_replies_total", code="250", rule="none") == 1
    assert delta(after, before, "smtp_listener_auth_total", result="failure") == 1
    assert delta(after, before, "smtp_listener_auth_total", result="success") == 1
    assert delta(after, before, "smtp_listener_messages_accepted_total") == 1
    assert delta(after, before, "smtp_listener_accepted_bytes_total") == 1234
    assert delta(after, before, "smtp_listener_store_duration_seconds_bucket", le="0.025") == 1
    assert after[("smtp_listener_settings_revision", ())] == 42
    assert delta(after, before, "smtp_listener_settings_reloads_total") == 1, "the first load is not a reload"
    assert delta(after, before, "smtp_listener_bind_failures_total", port="25") == 1
    metrics.session_closed(2525)
    assert delta(scrape(port), before, "smtp_listener_open_sessions", port="2525") == 0


def test_a_metrics_address_must_be_host_and_port():
    assert metrics.parse_address("[::1]:9125") == ("::1", 9125)
    for wrong in ("9125", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":9125"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            metrics.parse_address(wrong)
