"""Who may do what: every URL of the console against every role, read from the URLconf itself so a
new page cannot be forgotten."""
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from directory import audit, models, roles
from directory.roles import EDITOR, MANAGER, READER
from tests.conftest import make_user
from tests.documents import make_documents
from tests.smtpservice import records

DOCUMENT_EDIT_ROLES = {
    "server": EDITOR, "configurationsettings": EDITOR, "internetsite": EDITOR,
    "person": MANAGER, "group": EDITOR, "tlscredentials": EDITOR,
}

# URL name -> (role needed to GET, role needed to POST); None: nobody may POST there.
EXPECTED = {
    "dashboard": (READER, None),
    "audit-list": (READER, None),
    "user-list": (MANAGER, None),
    "user-create": (MANAGER, MANAGER),
    "user-role": (MANAGER, MANAGER),
    "user-manage": (MANAGER, MANAGER),
    "directory-import": (MANAGER, MANAGER),
    "directory-export": (MANAGER, None),
    "two-factor": (READER, READER),
    "directory:server-generate-certificate": (EDITOR, EDITOR),
    "directory:deleted-list": (READER, None),
}
# Pages of the SMTP service: read-only, and the object behind each pk (documents[...]).
SMTP_PAGES = {
    "smtpservice:message-list": None, "smtpservice:message-detail": "receivedmessage",
    "smtpservice:message-download": "receivedmessage", "smtpservice:mailbox-list": None,
    "smtpservice:mailbox": "person", "smtpservice:mailbox-message": "mailboxentry",
    "smtpservice:session-list": None, "smtpservice:session-detail": "sessionlog",
}
EXPECTED |= {name: (READER, None) for name in SMTP_PAGES}
# AUTH throttles: Reader sees them, a Manager lifts one.
EXPECTED["smtpservice:throttle-list"] = (READER, MANAGER)
# The relay queue: Reader sees, Editor acts; the pk of a message page is documents["receivedmessage"].
EXPECTED |= {
    "queue:list": (READER, None), "queue:message-detail": (READER, None), "queue:send-test": (EDITOR, EDITOR),
    **{f"queue:message-{action}": (EDITOR, EDITOR) for action in ("retry", "hold", "release", "delete")},
}
# Explain and verify a server: the simulator changes nothing (a Reader may post it); the self-test needs an Editor.
EXPLAIN_PAGES = {"explain:simulator": (READER, READER), "explain:selftest": (READER, EDITOR)}
EXPECTED |= EXPLAIN_PAGES
for _model_name, _edit_role in DOCUMENT_EDIT_ROLES.items():
    EXPECTED |= {
        f"directory:{_model_name}-list": (READER, None),
        f"directory:{_model_name}-detail": (READER, None),
        f"directory:{_model_name}-create": (_edit_role, _edit_role),
        f"directory:{_model_name}-update": (_edit_role, _edit_role),
        f"directory:{_model_name}-delete": (_edit_role, _edit_role),
        f"directory:{_model_name}-history": (READER, None),
        f"directory:{_model_name}-compare": (READER, None),
        f"directory:{_model_name}-restore": (_edit_role, _edit_role),
    }
# Usable without logging in.
PUBLIC = {"login", "set_language"}
# POST-only, for any logged-in user whatever their role.
LOGOUT = "logout"
ROLES = [None, READER, EDITOR, MANAGER]


def url_patterns(patterns=None, namespace=""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry.url_patterns, f"{namespace}{entry.namespace}:" if entry.namespace else namespace)
        else:
            yield f"{namespace}{entry.name}" if entry.name else None, entry


URLS = dict(url_patterns())
PROTECTED = sorted(name for name in URLS if name in EXPECTED)


@pytest.fixture
def documents(db):
    found = make_documents()
    for document in list(found.values()):
        audit.baseline_version(document)  # version 1, for the restore pages
    found["user"] = make_user("target", READER)
    found["receivedmessage"], found["mailboxentry"] = records.received(found["server"], found["person"])
    found["sessionlog"] = records.session(found["server"])
    return found


def url_of(name, documents):
    """The URL of a page, its pk filled with a real object of the right type."""
    if "pk" not in URLS[name].pattern.converters:
        return reverse(name)
    if name.startswith("user-"):
        return reverse(name, args=[documents["user"].pk])
    if name in SMTP_PAGES:
        return reverse(name, args=[documents[SMTP_PAGES[name]].pk])
    if name.startswith("queue:"):
        return reverse(name, args=[documents["receivedmessage"].pk])
    if name in EXPLAIN_PAGES:
        return reverse(name, args=[documents["server"].pk])
    model_name = name.removeprefix("directory:").split("-", 1)[0]
    if "number" in URLS[name].pattern.converters:
        return reverse(name, args=[documents[model_name].pk, 1])
    return reverse(name, args=[documents[model_name].pk])


def state():
    """Everything a POST could change: every document, the audit trail, users and their roles."""
    tables = {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (models.Server, models.ConfigurationSettings, models.InternetSite, models.Person,
                      models.Group, models.TLSCredentials, models.AuditEntry, models.DocumentVersion)
    }
    tables["users"] = list(User.objects.order_by("pk", "groups__name").values_list("username", "password", "groups__name"))
    return tables


def at_least(role, required):
    return role is not None and required is not None and roles.ORDER.index(role) >= roles.ORDER.index(required)


def client_for(role, **kwargs):
    client = Client(**kwargs)
    client.force_login(make_user(f"user-{role or 'norole'}".lower(), role))
    return client


def test_every_url_is_named_and_has_an_expected_role():
    assert None not in URLS, "every URL needs a name to be checked here"
    assert set(URLS) == set(EXPECTED) | PUBLIC | {LOGOUT}


@pytest.mark.parametrize("name", sorted(set(URLS) - PUBLIC))
def test_anonymous_get_is_sent_to_the_login_page(client, documents, name):
    url = url_of(name, documents)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")


def test_login_page_and_language_switch_work_without_login(client, db):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("set_language"), {"language": "fr", "next": reverse("login")})
    assert response.status_code == 302
    assert response.cookies["django_language"].value == "fr"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", PROTECTED)
def test_get_needs_the_role_of_the_page(documents, name, role):
    get_role, _post_role = EXPECTED[name]
    response = client_for(role).get(url_of(name, documents))
    assert response.status_code == (200 if at_least(role, get_role) else 403)


@pytest.mark.parametrize(
    ("name", "role"), [(name, role) for name in PROTECTED for role in ROLES if not at_least(role, EXPECTED[name][1])]
)
def test_post_is_refused_below_the_edit_role_and_changes_nothing(documents, name, role):
    client = client_for(role)
    before = state()
    response = client.post(url_of(name, documents), {"name": "changed/Acme"})
    if role in (None, READER) or (role == EDITOR and name.startswith(("directory:person-", "user-"))):
        assert response.status_code == 403
    else:
        # A page that accepts no POST at all may answer 405 to a role that edits elsewhere.
        assert response.status_code in (403, 405)
    assert state() == before


@pytest.mark.parametrize("name", [name for name in PROTECTED if EXPECTED[name][1] is not None])
def test_allowed_roles_are_not_refused(documents, name):
    response = client_for(MANAGER).post(url_of(name, documents), {})
    assert response.status_code in (200, 302)


def test_logout_is_post_only_and_logs_out(documents):
    client = client_for(READER)
    assert client.get(reverse(LOGOUT)).status_code == 405
    response = client.post(reverse(LOGOUT))
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


@pytest.mark.parametrize("name", sorted(URLS))
def test_post_without_csrf_token_is_refused(documents, name):
    client = client_for(MANAGER, enforce_csrf_checks=True)
    before = state()
    response = client.post(url_of(name, documents), {"name": "changed/Acme", "language": "fr", "role": ""})
    assert response.status_code == 403
    assert state() == before
