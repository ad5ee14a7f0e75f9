"""What the listener stores, made directly for console tests: received messages, mailbox entries, session logs."""
import datetime

from django.utils import timezone

from smtpservice.models import MailboxEntry, ReceivedMessage, SessionLog

MESSAGE = (
    b"Received: from client.example.org ([192.0.2.7])\r\n\tby mail1.acme.test with ESMTP id abc123;\r\n"
    b"\tMon, 2 Jun 2025 10:00:00 +0200\r\n"
    b"From: Bob <bob@example.org>\r\nTo: jane@acme.test\r\nSubject: =?utf-8?q?Caf=C3=A9_order?=\r\n"
    b"Message-ID: <order-1@example.org>\r\n\r\nTwo coffees, please.\r\n"
)


def received(server, person=None, data=MESSAGE, subject="=?utf-8?q?Caf=C3=A9_order?=", **fields):
    """A stored message, delivered to ``person``'s mailbox when given; returns (message, mailbox entry or None)."""
    recipient = person.internet_address if person else "someone@partner.test"
    message = ReceivedMessage.objects.create(**{
        "server": server, "mail_from": "bob@example.org", "recipients": [recipient], "size": len(data), "data": data,
        "subject": subject, "message_id": "<order-1@example.org>", "client_address": "192.0.2.7",
        "client_helo": "client.example.org", "local_port": 25, "session_id": "abc123", **fields,
    })
    entry = MailboxEntry.objects.create(person=person, message=message, recipient=recipient) if person else None
    return message, entry


def session(server, events=(), started_at=None, **fields):
    """A finished session: connected, the given decisions ``(command, rule, detail, reply)``, then QUIT."""
    started_at = started_at or timezone.now()
    decisions = [{"command": c, "rule": r, "detail": d, "reply": reply} for c, r, d, reply in events]
    return SessionLog.objects.create(**{
        "server": server, "session_id": "abc123", "started_at": started_at,
        "ended_at": started_at + datetime.timedelta(seconds=2), "client_address": "192.0.2.7",
        "local_address": "127.0.0.1", "local_port": 25, "port_kind": "tcp", "last_reply": "221 Bye",
        "events": decisions, **fields,
    })
