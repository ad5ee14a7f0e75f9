"""Secrets are never rendered back: Internet passwords (as typed or as stored hashes), the relay host
password and private keys appear on no page of the console, whatever the page, the version or the
form re-shown to confirm a warning."""
import base64
import smtplib

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from directory import audit, models, tls
from directory.history import versions_of
from directory.models import DocumentVersion
from directory.presenters import BY_NAME
from directory.roles import MANAGER
from smtpservice.core.texts import render
from smtpservice.models import DeliveryAttempt, MailboxEntry, ReceivedMessage, SessionLog
from tests.adminconsole.test_permissions import LOGOUT, PUBLIC, URLS, url_of
from tests.conftest import make_user
from tests.directory.documents import form_data, save
from tests.documents import PASSWORD, RELAY_PASSWORD, make_documents
from tests.outbound.conftest import (  # noqa: F401 (fixtures)
    BOB,
    BOB_PASSWORD,
    alpha,
    beta,
    ca,
    change,
    configuration,
    jane,
    make_credentials,
    make_router,
    make_server,
    queue_at,
    run_listener,
)
from tests.smtpservice import records
from tests.smtpservice.conftest import wait_until

NEW_PASSWORD = "Another-pass-77"
NEW_RELAY_PASSWORD = "Relay-new-9012"
DELETED_PASSWORD = "Deleted-pass-3456"


def key_lines(pem):
    """The base64 lines of a PEM private key: any one of them shown would leak part of the key."""
    return [line for line in pem.strip().splitlines() if not line.startswith("-----")]


def hash_parts(encoded):
    """A stored password hash, whole and its salt and digest alone."""
    return [encoded, *(part for part in encoded.split("$")[-2:] if len(part) >= 8)]


@pytest.fixture
def manager_client(db):
    client = Client()
    client.force_login(make_user("secrets-manager", MANAGER))
    return client


@pytest.fixture
def directory(manager_client):
    """A directory whose secrets were set, changed and deleted through the console, so every kind of
    page (document, audit trail, versions, comparisons, restores, deleted documents) has some to leak."""
    documents = make_documents()
    for document in list(documents.values()):
        audit.baseline_version(document)
    person, configuration = documents["person"], documents["configurationsettings"]
    first_hash, first_key = person.internet_password, documents["tlscredentials"].private_key_pem

    def edit(document, **changes):
        response = manager_client.post(
            reverse(f"directory:{document._meta.model_name}-update", args=[document.pk]),
            form_data(type(document), document, **changes),
        )
        assert response.status_code == 302
        document.refresh_from_db()

    edit(person, internet_password=NEW_PASSWORD)
    edit(configuration, relay_auth_password=NEW_RELAY_PASSWORD)
    certificate_pem, new_key = tls.generate_self_signed("mail1.acme.test")
    edit(documents["tlscredentials"], certificate_pem=certificate_pem, private_key_pem=new_key)
    assert person.check_internet_password(NEW_PASSWORD)
    assert configuration.relay_auth_password == NEW_RELAY_PASSWORD
    assert documents["tlscredentials"].private_key_pem == new_key

    spare_pem, spare_key = tls.generate_self_signed("spare.acme.test")
    spare = save(models.TLSCredentials, name="spare-cert", certificate_pem=spare_pem, private_key_pem=spare_key)
    leaver = save(models.Person, full_name="Bob Leaver/Acme", internet_address="bob@acme.test", internet_password=DELETED_PASSWORD)
    leaver_hash = models.Person.objects.get(pk=leaver.pk).internet_password
    for document in (spare, leaver):
        assert manager_client.post(reverse(f"directory:{document._meta.model_name}-delete", args=[document.pk])).status_code == 302

    documents["receivedmessage"], documents["mailboxentry"] = records.received(documents["server"], person)
    documents["sessionlog"] = records.session(documents["server"])
    documents["user"] = User.objects.get(username="secrets-manager")
    secrets = [PASSWORD, NEW_PASSWORD, DELETED_PASSWORD, RELAY_PASSWORD, NEW_RELAY_PASSWORD]
    for encoded in (first_hash, person.internet_password, leaver_hash):
        secrets += hash_parts(encoded)
    for key in (first_key, new_key, spare_key):
        secrets += key_lines(key)
    return documents, secrets


def version_pages(name, document_type, pk):
    """The history, comparison and restore pages of one document, for each of its versions."""
    numbers = sorted(versions_of(document_type.name, pk).values_list("number", flat=True))
    if name.endswith("-history"):
        return [reverse(name, args=[pk])]
    if name.endswith("-compare"):
        pairs = list(zip(numbers, numbers[1:])) or [(numbers[0], numbers[0])]
        return [f"{reverse(name, args=[pk])}?a={first}&b={second}" for first, second in pairs]
    return [reverse(name, args=[pk, number]) for number in numbers]


def every_get_page(documents):
    """``(URL name, URL)`` of every page a Manager can GET; directory pages for every document and
    version, deleted ones included."""
    pages = [("dashboard", "/?page=1"), ("audit-list", f"{reverse('audit-list')}?q=password"),
             ("directory:deleted-list", f"{reverse('directory:deleted-list')}?type=person")]
    for name in sorted(set(URLS) - PUBLIC - {LOGOUT}):
        model_name = name.removeprefix("directory:").split("-", 1)[0]
        document_type = BY_NAME.get(model_name) if name.startswith("directory:") else None
        if document_type is None or "pk" not in URLS[name].pattern.converters:
            pages.append((name, url_of(name, documents)))
            continue
        pks = set(document_type.model.objects.values_list("pk", flat=True))
        pks |= {int(pk) for pk in DocumentVersion.objects.filter(document_type=model_name).values_list("object_id", flat=True)}
        for pk in sorted(pks):
            if name.endswith(("-history", "-compare", "-restore")):
                pages += [(name, page) for page in version_pages(name, document_type, pk)]
            elif document_type.model.objects.filter(pk=pk).exists():
                pages.append((name, reverse(name, args=[pk])))
    return pages


def assert_no_secret(page_url, response, secrets):
    body = response.content.decode()
    shown = [secret for secret in secrets if secret in body]
    assert not shown, f"{page_url} shows {shown}"


def test_no_page_of_the_console_shows_a_secret(manager_client, directory):
    documents, secrets = directory
    pages = every_get_page(documents)
    statuses = {}
    for _name, page_url in pages:
        response = manager_client.get(page_url)
        statuses[page_url] = response.status_code
        assert_no_secret(page_url, response, secrets)
    assert {page_url: status for page_url, status in statuses.items() if status != 200} == {}
    assert {name for name, _url in pages} == set(URLS) - PUBLIC - {LOGOUT}
    deleted = DocumentVersion.objects.filter(action=DocumentVersion.Action.DELETE)
    assert {version.document_type for version in deleted} == {"tlscredentials", "person"}
    for version in deleted:
        assert reverse(f"directory:{version.document_type}-restore", args=[version.object_id, version.number]) in statuses


# A change that makes each form invalid.
ERRORS = {
    models.Server: {"name": ""}, models.ConfigurationSettings: {"max_recipients": "0"}, models.InternetSite: {"name": ""},
    models.Person: {"full_name": ""}, models.TLSCredentials: {"name": ""},
}


@pytest.mark.parametrize(("model", "how"), [
    *((model, "error") for model in ERRORS),
    *((model, "preview") for model in (models.Server, models.ConfigurationSettings, models.InternetSite)),
])
def test_a_form_shown_again_never_fills_in_a_stored_secret(manager_client, directory, model, how):
    """“Preview”, a warning to confirm or an error re-show the form with what was posted: a secret left
    blank (kept as stored) must stay blank."""
    _documents, secrets = directory
    document = model.objects.first()
    data = form_data(model, document, **(ERRORS[model] if how == "error" else {}))
    if how == "preview":
        data["preview"] = "1"
    response = manager_client.post(reverse(f"directory:{model._meta.model_name}-update", args=[document.pk]), data)
    assert response.status_code == 200
    assert_no_secret(f"{model.__name__} {how}", response, secrets)


WRONG_PASSWORD = "Bob-wrong-0000"
# What the pages about a message or session show, by the model behind their pk.
RECORD_PAGES = {
    "smtpservice:message-detail": ReceivedMessage, "smtpservice:message-download": ReceivedMessage,
    "smtpservice:mailbox": models.Person, "smtpservice:mailbox-message": MailboxEntry,
    "smtpservice:session-detail": SessionLog,
}


def record_pages():
    """Every page about received mail, sessions and the queue, for every record there is."""
    pages = []
    for name in sorted(name for name in URLS if name.startswith(("smtpservice:", "queue:"))):
        if "pk" not in URLS[name].pattern.converters:
            pages.append(reverse(name))
            continue
        model = RECORD_PAGES.get(name, ReceivedMessage)
        pages += [reverse(name, args=[pk]) for pk in model.objects.values_list("pk", flat=True)]
    return pages


def smtp_auth_secrets(login, *passwords):
    """The passwords, and how AUTH PLAIN and AUTH LOGIN carry them on the wire."""
    found = []
    for password in passwords:
        found += [password, base64.b64encode(password.encode()).decode(),
                  base64.b64encode(f"\0{login}\0{password}".encode()).decode()]
    return found


@pytest.mark.django_db(transaction=True)
def test_smtp_sessions_and_relay_transcripts_never_show_a_password(alpha, beta, configuration, run_listener, make_router):
    """Over real sockets: Bob authenticates to server B (rightly with PLAIN, wrongly with LOGIN), and
    server A relays through B with Bob's credentials. The session logs of B and the attempt log of A
    say who authenticated, never with what."""
    change(beta, smtp_inbound_tcp_auth_name_password=True)
    change(configuration, relay_host=f"127.0.0.1:{beta.smtp_inbound_tcp_port}", relay_auth="required",
           relay_auth_name=BOB, relay_auth_password=BOB_PASSWORD, relay_auth_allow_cleartext=True)
    run_listener(beta)
    with smtplib.SMTP("127.0.0.1", beta.smtp_inbound_tcp_port, timeout=10) as client:
        assert client.login(BOB, BOB_PASSWORD)[0] == 235
    with smtplib.SMTP("127.0.0.1", beta.smtp_inbound_tcp_port, timeout=10) as client:
        client.ehlo()
        client.user, client.password = BOB, WRONG_PASSWORD
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth("LOGIN", client.auth_login)
    message = queue_at(alpha, [BOB])
    make_router(alpha).run_once()
    assert render(DeliveryAttempt.objects.filter(message=message).latest("pk").authentication).startswith("Authenticated as")
    wait_until(lambda: SessionLog.objects.filter(authenticated_as__gt="").count() >= 2 and SessionLog.objects.count() >= 3)

    client = Client()
    client.force_login(make_user("smtp-manager", MANAGER))
    secrets = smtp_auth_secrets(BOB, BOB_PASSWORD, WRONG_PASSWORD)
    pages = record_pages()
    for page_url in pages:
        response = client.get(page_url)
        assert response.status_code == 200, page_url
        assert_no_secret(page_url, response, secrets)
    assert sum("/sessions/" in page for page in pages) >= 4
