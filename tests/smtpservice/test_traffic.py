"""The dashboard's numbers: hourly rollups of the session log, the queue's depth, and the charts drawn from them."""
import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from directory import roles
from smtpservice.console import charts
from smtpservice.models import QueuedRecipient, TrafficHour
from smtpservice.store import traffic
from tests.conftest import make_user
from tests.documents import make_documents
from tests.smtpservice import records

ACCEPTED = [("MAIL", "mail_from", "", "250 OK"), ("DATA", "data", "", "250 OK")]
UNKNOWN_USER = [("RCPT", "user_unknown", "", "550 5.1.1 User unknown")]
RELAY = [("RCPT", "relay_external", "", "554 5.7.1 Relay rejected for policy reasons.")]
BAD_AUTH = [("AUTH", "wrong_password", "", "535 5.7.8 Authentication credentials invalid")]


@pytest.fixture
def server(db):
    return make_documents()["server"]


def test_counts_accepted_refused_by_reason_and_auth_failures_for_the_hour_and_the_day(server):
    now = timezone.now()
    records.session(server, ACCEPTED, started_at=now - datetime.timedelta(minutes=5), messages_accepted=1)
    records.session(server, UNKNOWN_USER + BAD_AUTH, started_at=now - datetime.timedelta(minutes=20))
    records.session(server, RELAY + ACCEPTED, started_at=now - datetime.timedelta(hours=5), messages_accepted=2)
    records.session(server, RELAY, started_at=now - datetime.timedelta(hours=30))

    numbers = traffic.traffic([server.pk], now)[server.pk]

    assert (numbers.last_hour.accepted, numbers.last_hour.refused_total, numbers.last_hour.auth_failures) == (1, 1, 1)
    assert (numbers.day.accepted, numbers.day.auth_failures) == (3, 1)
    assert dict(numbers.day.by_reason()) == {"unknown recipient": 1, "relay denied": 1}, "the session 30 hours ago is not counted"
    assert len(numbers.hours) == traffic.HOURS


def test_settled_hours_are_counted_once_and_then_read_from_their_rollup(server, django_assert_max_num_queries):
    now = timezone.now()
    records.session(server, ACCEPTED, started_at=now - datetime.timedelta(hours=3), messages_accepted=1)
    traffic.traffic([server.pk], now)
    settled = TrafficHour.objects.filter(server=server)
    assert settled.count() >= traffic.HOURS - 2 and sum(settled.values_list("accepted", flat=True)) == 1

    with django_assert_max_num_queries(5):
        again = traffic.traffic([server.pk], now)[server.pk]
    assert again.day.accepted == 1


def test_queue_depth_counts_recipients_waiting_then_and_now(server):
    now = timezone.now()
    message, _entry = records.received(server, received_at=now - datetime.timedelta(hours=3))
    QueuedRecipient.objects.create(message=message, recipient="a@partner.test")
    QueuedRecipient.objects.create(
        message=message, recipient="b@partner.test", state=QueuedRecipient.State.DELIVERED, delivered_at=now - datetime.timedelta(hours=1),
    )
    hours_ago = [4, 2, 0]
    depths = [traffic.queue_depth_at([server.pk], now - datetime.timedelta(hours=hours))[server.pk] for hours in hours_ago]
    assert depths == [0, 2, 1]
    numbers = traffic.traffic([server.pk], now)[server.pk]
    assert numbers.queue_depth == 1 and [depth for _moment, depth in numbers.queue_hours][-5:] == [0, 2, 2, 1, 1]


def test_charts_name_their_series_in_the_legend(server):
    records.session(server, UNKNOWN_USER + ACCEPTED, messages_accepted=1)
    numbers = traffic.traffic([server.pk])[server.pk]
    traffic_chart, queue_chart, auth_chart = charts.charts(numbers)
    assert [series.label for series in traffic_chart.series] == ["accepted", "refused: unknown recipient"]
    assert [series.label for series in queue_chart.series] == ["recipients waiting"]
    assert [series.label for series in auth_chart.series] == ["AUTH failures"]
    assert len(traffic_chart.series[0].points.split()) == traffic.HOURS


def test_dashboard_draws_the_charts_as_inline_svg_with_legends(client, server):
    records.session(server, UNKNOWN_USER + ACCEPTED, messages_accepted=1)
    client.force_login(make_user("reader", roles.READER))
    page = client.get(reverse("dashboard")).content.decode()
    svg = page.split('data-chart="traffic"')[1].split("</svg>")[0]
    assert "<polyline" in svg and ">accepted (1)</text>" in svg and ">refused: unknown recipient (1)</text>" in svg
    assert page.count("<svg") == 3
    assert "<script" not in svg
