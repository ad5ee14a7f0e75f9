"""Console pages that span the directory: dashboard, audit trail, console users, login and language."""
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from directory import models, roles
from directory.models import AuditEntry
from tests.conftest import make_user
from tests.directory.documents import make_credentials, save
from tests.documents import make_documents


@pytest.fixture
def documents(db):
    return make_documents()


def logged_in(client, user):
    client.force_login(user)
    return client


def test_login_page_logs_in_and_logout_logs_out(client, db):
    make_user("alice", roles.READER, password="Alice-pass-1234")
    response = client.post(reverse("login"), {"username": "alice", "password": "Alice-pass-1234"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == 200 and "alice" in dashboard.content.decode()
    assert client.post(reverse("logout"))["Location"] == reverse("login")
    assert client.get(reverse("dashboard")).status_code == 302


def test_user_without_a_role_is_refused(client, db):
    logged_in(client, make_user("nobody"))
    assert client.get(reverse("dashboard")).status_code == 403


def test_dashboard_shows_counts_ports_warnings_expiring_certificates_and_recent_changes(client, reader, documents):
    server = documents["server"]
    server.smtp_inbound_tcp_port = 26
    server.smtp_outbound_tcp_port = 2526
    server.save()
    make_credentials(name="soon-expired", host_name="old.acme.test", days=10)
    save(models.Group, user=reader, name="Audited Group")

    response = logged_in(client, reader).get(reverse("dashboard"))
    assert response.status_code == 200
    counts = {document_type.name: count for document_type, count in response.context["counts"]}
    assert counts == {"server": 1, "configurationsettings": 1, "internetsite": 1, "person": 1, "group": 2, "tlscredentials": 2}
    page = response.content.decode()
    summary = page.split(f'id="server-{server.pk}"')[1].split("</table>")[0]
    assert "26 · Enabled" in summary and "2526 · Enabled" in summary and "465 · Disabled" in summary
    assert "Senders try port 25 by default" in page
    expiring = page.split('class="expiring-certificates"')[1].split("</ul>")[0]
    assert "soon-expired" in expiring and "mail1-cert" not in expiring
    assert "Audited Group" in page.split('id="recent-title"')[1]
    assert reverse("user-list") not in page, "only Managers see the Users page in the menu"


def test_audit_trail_filters_by_type_user_and_text(client, editor, manager, documents):
    server = documents["server"]
    save(models.Server, server, editor, host_name="smtp1.acme.test", tls_credentials="")
    group = documents["group"]
    save(models.Group, group, manager, members="Sales")
    logged_in(client, editor)

    def shown(**filters):
        response = client.get(reverse("audit-list"), filters)
        assert response.status_code == 200
        return [(entry.document_type, entry.actor) for entry in response.context["entries"]]

    assert shown() == [("group", "manager"), ("server", "editor")]
    assert shown(document_type="server") == [("server", "editor")]
    assert shown(actor="manager") == [("group", "manager")]
    assert shown(q="smtp1") == [("server", "editor")]
    assert shown(q="nothing like this") == []
    page = client.get(reverse("audit-list"), {"document_type": "server"}).content.decode()
    assert "Fully qualified Internet host name" in page and "smtp1.acme.test" in page


def test_audit_trail_pages(client, reader, db):
    for number in range(30):
        AuditEntry.objects.create(actor="import", action="create", document_type="group", object_id=str(number), object_repr=f"G{number}")
    logged_in(client, reader)
    assert len(client.get(reverse("audit-list")).context["entries"]) == 25
    assert len(client.get(reverse("audit-list"), {"page": 2}).context["entries"]) == 5


def test_manager_sets_a_role_and_the_change_is_audited(client, manager, reader):
    logged_in(client, manager)
    page = client.get(reverse("user-list"))
    rows = {row["user"].username: row for row in page.context["rows"]}
    assert str(rows["reader"]["role"]) == "Reader" and str(rows["manager"]["role"]) == "Manager"
    assert rows["manager"]["form"] is None, "a Manager cannot demote themselves"

    response = client.post(reverse("user-role", args=[reader.pk]), {f"user-{reader.pk}-role": roles.EDITOR})
    assert response.status_code == 302
    assert roles.role_of(User.objects.get(pk=reader.pk)) == roles.EDITOR
    entry = AuditEntry.objects.get(document_type="user")
    assert entry.changes == {"role": [roles.READER, roles.EDITOR]} and entry.actor == "manager"

    client.post(reverse("user-role", args=[reader.pk]), {f"user-{reader.pk}-role": ""})
    assert roles.role_of(User.objects.get(pk=reader.pk)) is None


def test_manager_cannot_change_their_own_role(client, manager):
    logged_in(client, manager)
    response = client.post(reverse("user-role", args=[manager.pk]), {f"user-{manager.pk}-role": roles.READER}, follow=True)
    assert "cannot be changed" in " ".join(str(m) for m in response.context["messages"])
    assert roles.role_of(User.objects.get(pk=manager.pk)) == roles.MANAGER


def test_manager_creates_a_console_user_who_can_log_in(client, manager):
    logged_in(client, manager)
    response = client.post(reverse("user-create"), {
        "username": "bob", "password1": "Bob-pass-98765", "password2": "Bob-pass-98765", "role": roles.EDITOR,
    })
    assert response.status_code == 302
    bob = User.objects.get(username="bob")
    assert roles.role_of(bob) == roles.EDITOR
    client.post(reverse("logout"))
    response = client.post(reverse("login"), {"username": "bob", "password": "Bob-pass-98765"})
    assert response["Location"] == reverse("dashboard")


def test_weak_password_is_refused_for_a_new_console_user(client, manager):
    logged_in(client, manager)
    response = client.post(reverse("user-create"), {"username": "eve", "password1": "123", "password2": "123", "role": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["password2"]
    assert not User.objects.filter(username="eve").exists()


def test_users_menu_shows_for_managers(client, manager):
    assert reverse("user-list") in logged_in(client, manager).get(reverse("dashboard")).content.decode()


def test_language_switch_renders_french(client, reader):
    logged_in(client, reader)
    response = client.post(reverse("set_language"), {"language": "fr", "next": reverse("dashboard")}, follow=True)
    assert response.status_code == 200
    assert '<html lang="fr">' in response.content.decode()
    assert '<option value="fr" lang="fr" selected>' in response.content.decode()


def test_language_switch_works_on_the_login_page(client, db):
    response = client.post(reverse("set_language"), {"language": "fr", "next": reverse("login")}, follow=True)
    assert response.status_code == 200
    assert '<html lang="fr">' in response.content.decode()
