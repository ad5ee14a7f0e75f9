"""Outages: the settings after which no one can send mail to a server, before saving and after."""
import pytest
from django.urls import reverse

from directory import models, roles
from smtpservice.console.outage import outages_after_site_deleted, server_outage
from tests.conftest import make_user
from tests.directory.documents import form_data
from tests.documents import make_documents

SITE_NOT_ENABLED = "554 5.7.0 This site is not enabled on the server."


@pytest.fixture
def documents(db):
    found = make_documents(load_internet_sites=True)
    return found


@pytest.fixture
def editor_client(client, db):
    client.force_login(make_user("editor", roles.EDITOR))
    return client


def test_a_server_with_its_only_site_accepts_mail_and_loses_it_when_the_site_goes(documents):
    site = documents["internetsite"]
    assert server_outage(documents["server"]) is None
    (outage,) = outages_after_site_deleted(site)
    assert outage.server_name == "mail1/Acme" and outage.reply == SITE_NOT_ENABLED
    assert "refused with “554 5.7.0 This site is not enabled on the server.”" in outage.headline


def test_delete_page_says_every_connection_will_be_refused_and_dashboard_turns_red_after(editor_client, documents):
    site = documents["internetsite"]
    page = editor_client.get(reverse("directory:internetsite-delete", args=[site.pk])).content.decode()
    preview = page.split('class="alert alert-danger outage-preview"')[1].split("</div>")[0]
    assert "Every SMTP connection to server mail1/Acme is refused with" in preview and SITE_NOT_ENABLED in preview

    editor_client.post(reverse("directory:internetsite-delete", args=[site.pk]))
    dashboard = editor_client.get(reverse("dashboard")).content.decode()
    alert = dashboard.split('class="alert alert-danger outage')[1].split("</div>\n</div>")[0]
    assert SITE_NOT_ENABLED in alert and reverse("directory:internetsite-create") in alert
    assert "Configured ports bound" not in dashboard and ">Outage</span>" in dashboard
    server_page = editor_client.get(documents["server"].get_absolute_url()).content.decode()
    assert SITE_NOT_ENABLED in server_page.split('class="alert alert-danger outage')[1]


def test_saving_all_site_options_no_is_previewed_as_an_outage_before_it_is_saved(editor_client, documents):
    site = documents["internetsite"]
    off = {name: False for name in (
        "tcp_auth_name_password", "tcp_auth_anonymous", "ssl_auth_client_certificate", "ssl_auth_name_password", "ssl_auth_anonymous",
    )}
    response = editor_client.post(reverse("directory:internetsite-update", args=[site.pk]), form_data(models.InternetSite, site, **off))
    assert response.status_code == 200, "a save that stops all mail is shown before it is saved"
    assert SITE_NOT_ENABLED in response.content.decode().split('class="alert alert-danger outage-preview')[1]
    site.refresh_from_db()
    assert site.tcp_auth_anonymous
