"""The directory documents through the console's pages, as an administrator uses them."""
import re

import pytest
from django.urls import reverse

from directory import models, tls
from directory.models import AuditEntry
from tests.directory.documents import form_data
from tests.documents import PASSWORD, RELAY_PASSWORD, make_documents


@pytest.fixture
def documents(db):
    return make_documents()


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def editor_client(client, editor):
    client.force_login(editor)
    return client


def url(model, action, pk=None):
    return reverse(f"directory:{model._meta.model_name}-{action}", args=[] if pk is None else [pk])


def messages_of(response):
    return [str(message) for message in response.context["messages"]]


def new_credentials_data():
    certificate_pem, private_key_pem = tls.generate_self_signed("mail3.acme.test")
    return {"name": "mail3-cert", "certificate_pem": certificate_pem, "private_key_pem": private_key_pem}


# model, fields of a new document, a change on edit (field, posted value, stored value)
CASES = [
    (models.Server, lambda: {"name": "mail2/Acme", "host_name": "mail2.acme.test"}, ("host_name", "smtp2.acme.test", "smtp2.acme.test")),
    (models.ConfigurationSettings, lambda: {"server": "mail1/Acme", "local_domains": "acme.test\nsales.acme.test"}, ("max_recipients", "50", 50)),
    (models.InternetSite, lambda: {"name": "Sales SMTP", "mapped_addresses": "192.0.2.10"}, ("organization", "Sales", "Sales")),
    (models.Person, lambda: {"full_name": "John Roe/Sales/Acme", "internet_address": "john@acme.test", "internet_password": "Pass-word-98"}, ("short_name", "jroe", "jroe")),
    (models.Group, lambda: {"name": "Sales", "members": "*/Sales/Acme\nJane Doe/Sales/Acme"}, ("group_type", "mail_only", "mail_only")),
    (models.TLSCredentials, new_credentials_data, ("name", "mail3 certificate", "mail3 certificate")),
]


@pytest.mark.parametrize(("model", "fields", "change"), CASES, ids=[case[0]._meta.model_name for case in CASES])
def test_create_edit_and_delete_each_document_type(manager_client, documents, model, fields, change):
    count = model.objects.count()

    response = manager_client.post(url(model, "create"), form_data(model, **fields()))
    assert response.status_code == 302, response.context and response.context["form"].errors
    document = model.objects.exclude(pk__in=[d.pk for d in documents.values() if isinstance(d, model)]).get()
    assert response["Location"] == document.get_absolute_url()
    assert model.objects.count() == count + 1
    detail = manager_client.get(document.get_absolute_url())
    assert detail.status_code == 200
    assert any("was saved" in message for message in messages_of(detail))
    created = AuditEntry.objects.get(document_type=model._meta.model_name, object_id=str(document.pk))
    assert created.action == "create" and created.actor == "manager"

    field, posted, stored = change
    edit_page = manager_client.get(url(model, "update", document.pk))
    assert edit_page.status_code == 200
    old_value = getattr(document, field)
    response = manager_client.post(url(model, "update", document.pk), form_data(model, document, **{field: posted}))
    assert response.status_code == 302
    document.refresh_from_db()
    assert getattr(document, field) == stored
    changed = AuditEntry.objects.filter(document_type=model._meta.model_name, object_id=str(document.pk), action="change").get()
    assert changed.changes == {field: [old_value, stored]}

    assert manager_client.get(url(model, "delete", document.pk)).status_code == 200
    response = manager_client.post(url(model, "delete", document.pk))
    assert response.status_code == 302 and response["Location"] == url(model, "list")
    assert not model.objects.filter(pk=document.pk).exists()
    assert AuditEntry.objects.filter(document_type=model._meta.model_name, object_id=str(document.pk), action="delete").exists()


def test_unchanged_edit_keeps_references_and_secrets(manager_client, documents):
    """Saving a form untouched must not drop the selected credentials nor the stored passwords."""
    server, person = documents["server"], documents["person"]
    configuration = documents["configurationsettings"]
    for document in (server, person, configuration):
        response = manager_client.post(url(type(document), "update", document.pk), form_data(type(document), document))
        assert response.status_code == 302, response.context["form"].errors
    server.refresh_from_db()
    person.refresh_from_db()
    configuration.refresh_from_db()
    assert server.tls_credentials == documents["tlscredentials"]
    assert person.check_internet_password(PASSWORD)
    assert configuration.relay_auth_password == RELAY_PASSWORD
    assert not AuditEntry.objects.exists(), "an unchanged document records no change"


def test_non_standard_port_is_saved_only_after_save_anyway(editor_client, documents):
    server = documents["server"]
    edit_url = url(models.Server, "update", server.pk)
    data = form_data(models.Server, server, smtp_inbound_tcp_port="26")

    response = editor_client.post(edit_url, data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Senders try port 25 by default" in page
    assert "SMTP Inbound TCP/IP port number" in page.split('class="alert alert-warning')[1]
    assert 'name="save_anyway"' in page and ">Save</button>" not in page, "no Save button that would only ask again"
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 25

    shown = response.context["form"]["confirm_warnings"].value()
    assert shown == "non_standard_port"
    response = editor_client.post(edit_url, {**data, "confirm_warnings": shown})
    assert response.status_code == 200, "plain Save checks the warnings again"
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 25

    response = editor_client.post(edit_url, {**data, "confirm_warnings": shown, "save_anyway": "1"})
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.smtp_inbound_tcp_port == 26

    response = editor_client.post(edit_url, form_data(models.Server, server, smtp_inbound_ssl_port="466"))
    assert response.status_code == 302, "the port did not change: its warning is a standing notice, not a question"
    server.refresh_from_db()
    assert server.smtp_inbound_ssl_port == 466
    assert "Senders try port 25 by default" in editor_client.get(server.get_absolute_url()).content.decode()


def test_failed_save_keeps_the_stored_name_in_heading_and_breadcrumb(editor_client, documents):
    server = documents["server"]
    response = editor_client.post(url(models.Server, "update", server.pk), form_data(models.Server, server, name="", smtp_inbound_ssl_port="25"))
    assert response.status_code == 200
    page = response.content.decode()
    heading = page.split("<h1")[1].split("</h1>")[0]
    assert server.name in heading and server.name in page.split('class="breadcrumb"')[1].split("</ol>")[0]


def test_error_is_shown_on_its_field_and_nothing_is_saved(editor_client, documents):
    server = documents["server"]
    response = editor_client.post(
        url(models.Server, "update", server.pk), form_data(models.Server, server, smtp_inbound_ssl_port="25")
    )
    assert response.status_code == 200
    assert "Please correct the errors below." in messages_of(response)
    page = response.content.decode()
    error = re.search(r'id="error_1_id_smtp_inbound_ssl_port"><strong>(.*?)</strong>', page)
    assert error and "The SSL port must differ from the TCP/IP port (25)." in error.group(1)
    assert 'name="save_anyway"' not in page
    server.refresh_from_db()
    assert server.smtp_inbound_ssl_port == 465
    assert not AuditEntry.objects.exists()


def test_list_searches_and_pages(editor_client, db):
    for number in range(30):
        models.Group.objects.create(name=f"Team {number:02}")
    models.Group.objects.create(name="Sales Managers", members=["*/Sales/Acme"])
    list_url = url(models.Group, "list")

    first = editor_client.get(list_url)
    assert len(first.context["rows"]) == 25
    assert first.context["page_obj"].paginator.count == 31
    second = editor_client.get(list_url, {"page": 2})
    assert [document.name for document, _values in second.context["rows"]] == [f"Team {n:02}" for n in range(24, 30)]

    found = editor_client.get(list_url, {"q": "sales"})
    assert [document.name for document, _values in found.context["rows"]] == ["Sales Managers"]
    by_member = editor_client.get(list_url, {"q": "*/Sales"})
    assert [document.name for document, _values in by_member.context["rows"]] == ["Sales Managers"]
    assert "Sales Managers" in found.content.decode() and "Team 01" not in found.content.decode()


def test_detail_shows_labels_values_and_audit_trail(editor_client, documents):
    server = documents["server"]
    editor_client.post(url(models.Server, "update", server.pk), form_data(models.Server, server, host_name="smtp1.acme.test", tls_credentials=""))
    response = editor_client.get(server.get_absolute_url())
    page = response.content.decode()

    def all_tabs(tabs):
        for tab in tabs:
            yield tab
            yield from all_tabs(tab["subtabs"])

    labels = {entry["label"]: entry["value"] for tab in all_tabs(response.context["tabs"]) for column in tab["columns"] for entry in column if "label" in entry}
    assert [tab["id"] for tab in all_tabs(response.context["tabs"])] == ["tab-basics", "tab-security", "tab-ports", "tab-internet-ports", "tab-mail"]
    assert labels["Fully qualified Internet host name"] == "smtp1.acme.test"
    assert labels["SMTP listener task"] == "Enabled"
    assert labels["SSL authentication: Name & password"] == "Yes"
    assert [tab["label"] for tab in all_tabs(response.context["tabs"])] == ["Basics", "Security", "Ports", "Internet Ports", "Mail"]
    trail = page.split('id="audit-trail"')[1]
    assert "mail1.acme.test" in trail and "smtp1.acme.test" in trail and "mail1-cert" in trail
    assert "editor" in trail


def test_secrets_are_never_rendered(manager_client, documents):
    person, credentials = documents["person"], documents["tlscredentials"]
    key_body = credentials.private_key_pem.strip().splitlines()[1]
    # Change each secret so the audit trail has entries about them too.
    manager_client.post(url(models.Person, "update", person.pk), form_data(models.Person, person, internet_password="Another-pass-77"))
    person.refresh_from_db()
    secrets = [PASSWORD, "Another-pass-77", person.internet_password, RELAY_PASSWORD, key_body]

    pages = [reverse("dashboard"), reverse("audit-list")]
    for name, document in documents.items():
        model = type(document)
        pages += [url(model, "list"), url(model, "update", document.pk), url(model, "delete", document.pk), document.get_absolute_url()]
    for page_url in pages:
        page = manager_client.get(page_url).content.decode()
        for secret in secrets:
            assert secret not in page, f"a secret shows on {page_url}"

    person_page = manager_client.get(person.get_absolute_url())
    values = {entry["name"]: entry["value"] for tab in person_page.context["tabs"] for column in tab["columns"] for entry in column if "name" in entry}
    assert values["internet_password"] == "set"
    key_page = manager_client.get(credentials.get_absolute_url())
    values = {entry["name"]: entry["value"] for tab in key_page.context["tabs"] for column in tab["columns"] for entry in column if "name" in entry}
    assert values["private_key_pem"] == "stored"


def test_generate_self_signed_certificate_selects_it_on_the_server(editor_client, db):
    server = models.Server.objects.create(name="mail9/Acme", host_name="mail9.acme.test")
    generate_url = reverse("directory:server-generate-certificate", args=[server.pk])

    response = editor_client.post(generate_url, {"days": 90})
    assert response.status_code == 302 and response["Location"] == server.get_absolute_url()
    server.refresh_from_db()
    credentials = server.tls_credentials
    assert credentials.name == "mail9.acme.test (self-signed)"
    assert credentials.covers("mail9.acme.test")
    audited = set(AuditEntry.objects.values_list("document_type", "action"))
    assert audited == {("tlscredentials", "create"), ("server", "change")}
    assert AuditEntry.objects.get(document_type="server").changes["tls_credentials"] == [None, credentials.name]

    page = editor_client.get(server.get_absolute_url()).content.decode()
    assert credentials.private_key_pem.strip().splitlines()[1] not in page
    assert "mail9.acme.test (self-signed)" in page

    editor_client.post(generate_url, {"days": 90})
    server.refresh_from_db()
    assert server.tls_credentials.name == "mail9.acme.test (self-signed) 2"


def test_generate_refuses_invalid_validity(editor_client, documents):
    server = documents["server"]
    response = editor_client.post(reverse("directory:server-generate-certificate", args=[server.pk]), {"days": 5000})
    assert response.status_code == 200
    assert response.context["form"].errors["days"]
    assert models.TLSCredentials.objects.count() == 1


def test_deleting_credentials_in_use_is_refused_with_a_message(editor_client, documents):
    credentials = documents["tlscredentials"]
    response = editor_client.post(url(models.TLSCredentials, "delete", credentials.pk), follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == credentials.get_absolute_url()
    message = " ".join(messages_of(response))
    assert "cannot be deleted" in message and "mail1/Acme" in message
    assert models.TLSCredentials.objects.filter(pk=credentials.pk).exists()
    assert not AuditEntry.objects.exists()


def test_editor_sees_no_edit_buttons_on_people(editor_client, documents):
    person = documents["person"]
    page = editor_client.get(person.get_absolute_url()).content.decode()
    assert url(models.Person, "update", person.pk) not in page
    assert url(models.Person, "create") not in editor_client.get(url(models.Person, "list")).content.decode()
    server_page = editor_client.get(documents["server"].get_absolute_url()).content.decode()
    assert url(models.Server, "update", documents["server"].pk) in server_page


def test_save_anyway_keeps_the_relay_password_typed_before_the_warning(editor_client, documents):
    configuration = documents["configurationsettings"]
    edit_url = url(models.ConfigurationSettings, "update", configuration.pk)
    data = form_data(models.ConfigurationSettings, configuration, anti_relay_enforcement="none", relay_auth_password="New-relay-pass-1")
    response = editor_client.post(edit_url, data)
    page = response.content.decode()
    assert "anyone may relay through this server" in page
    # The browser posts back what the confirmation page holds.
    assert re.search(r'<input type="password" name="relay_auth_password" value="New-relay-pass-1"', page)
    data["confirm_warnings"] = response.context["form"]["confirm_warnings"].value()
    response = editor_client.post(edit_url, {**data, "save_anyway": "1"})
    assert response.status_code == 302
    configuration.refresh_from_db()
    assert configuration.anti_relay_enforcement == "none"
    assert configuration.relay_auth_password == "New-relay-pass-1"


def test_a_refused_password_is_not_sent_back(manager_client, documents):
    response = manager_client.post(
        url(models.Person, "create"),
        form_data(models.Person, full_name="Jane Doe/Sales/Acme", internet_password="Typed-pass-4321"),
    )
    assert response.status_code == 200 and response.context["form"].errors["full_name"]
    assert "Typed-pass-4321" not in response.content.decode()
