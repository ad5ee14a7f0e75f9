"""``store.rows``: the listener's prepared inserts write what the ORM would write, on SQLite and PostgreSQL."""
import pytest
from django.db import DatabaseError, transaction

from directory.models import Person
from smtpservice.models import MailboxEntry, ReceivedMessage
from smtpservice.store.rows import Rows

pytestmark = pytest.mark.django_db


def message(server, number, **fields):
    return {"server_id": server.pk, "mail_from": f"sender{number}@example.org", "recipients": [f"r{number}@acme.test"],
            "size": number, "data": b"Subject: %d\r\n\r\nbody\x00\xff" % number, "subject": f"message {number}",
            "local_port": 25, **fields}


def test_the_ids_come_back_in_the_order_of_the_rows(make_server):
    server = make_server()
    rows = [message(server, number) for number in range(40)]

    ids = Rows(ReceivedMessage).insert_returning_ids(rows)

    assert len(set(ids)) == 40
    stored = dict(ReceivedMessage.objects.values_list("pk", "subject"))
    assert [stored[pk] for pk in ids] == [row["subject"] for row in rows]


def test_values_are_adapted_as_the_orm_adapts_them_and_missing_fields_take_their_defaults(make_server):
    server = make_server()

    [pk] = Rows(ReceivedMessage).insert_returning_ids([message(server, 7, client_address="2001:db8::1")])

    stored = ReceivedMessage.objects.get(pk=pk)
    assert stored.recipients == ["r7@acme.test"]
    assert bytes(stored.data) == b"Subject: 7\r\n\r\nbody\x00\xff"
    assert stored.client_address == "2001:db8::1"
    assert stored.received_at is not None and stored.received_at.tzinfo is not None
    assert stored.origin == ReceivedMessage.Origin.SMTP
    assert (stored.message_id, stored.client_helo, stored.tls) == ("", "", False)


def test_a_row_the_database_refuses_raises_django_s_error_and_writes_nothing(make_server):
    server = make_server()

    with pytest.raises(DatabaseError), transaction.atomic():
        Rows(ReceivedMessage).insert_returning_ids([message(server, 1), message(server, 2, local_port=-1)])

    assert not ReceivedMessage.objects.exists()


def test_a_looked_up_foreign_key_finds_its_row_by_a_unique_field_or_stays_empty(make_server, jane):
    server = make_server()
    [pk] = Rows(ReceivedMessage).insert_returning_ids([message(server, 1)])

    Rows(MailboxEntry, looked_up={"person_id": (Person, "full_name")}).insert([
        {"person_id": jane.full_name, "message_id": pk, "recipient": "jane@acme.test"},
        {"person_id": "Nobody/Acme", "message_id": pk, "recipient": "gone@acme.test"},
        {"person_id": None, "message_id": pk, "recipient": "postmaster"},
    ])

    assert sorted(MailboxEntry.objects.values_list("recipient", "person")) == [
        ("gone@acme.test", None), ("jane@acme.test", jane.pk), ("postmaster", None),
    ]
    assert all(entry.delivered_at is not None for entry in MailboxEntry.objects.all())
