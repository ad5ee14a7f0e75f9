"""Directory import and export from the console: the commands' code, a dry-run report first, Managers only."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from directory import importexport
from directory.models import AuditEntry, Group, Server
from tests.documents import make_documents


@pytest.fixture
def manager_client(client, manager):
    make_documents()
    client.force_login(manager)
    return client


def upload(client, document, **extra):
    data = json.dumps(document).encode() if not isinstance(document, bytes) else document
    return client.post(reverse("directory-import"), {"file": SimpleUploadedFile("directory.json", data, "application/json"), **extra})


def test_export_downloads_what_exportdirectory_writes(manager_client):
    response = manager_client.get(reverse("directory-export"))
    assert response["Content-Disposition"].startswith('attachment; filename="directory-')
    assert json.loads(response.content) == importexport.export_directory(include_secrets=False)


def test_upload_shows_the_dry_run_report_then_apply_changes_the_directory_in_the_managers_name(manager_client):
    document = importexport.export_directory()
    document["groups"].append({**document["groups"][0], "name": "Night Shift"})
    document["servers"][0]["smtp_inbound"]["tcp_port"] = 2525

    page = upload(manager_client, document).content.decode()
    tallies = page.split('class="table table-sm import-tallies"')[1].split("</table>")[0]
    assert '<tr data-type="groups"><th scope="row"><code>groups</code></th><td>1</td><td>0</td><td>0</td><td>1</td></tr>' in tallies
    assert "<td>0</td><td>1</td><td>0</td><td>0</td>" in tallies.split('data-type="servers"')[1].split("</tr>")[0]
    assert "Senders try port 25 by default" in page.split('class="import-warnings"')[1], "warnings as importdirectory gives them"
    assert not Group.objects.filter(name="Night Shift").exists(), "the dry run changes nothing"

    response = manager_client.post(reverse("directory-import"), {"apply": "1"})
    assert response.status_code == 302
    assert Group.objects.filter(name="Night Shift").exists() and Server.objects.get().smtp_inbound_tcp_port == 2525
    assert set(AuditEntry.objects.filter(object_repr__in=["Night Shift", "mail1/Acme"]).values_list("actor", flat=True)) == {"manager"}
    assert manager_client.post(reverse("directory-import"), {"apply": "1"}).status_code == 302
    assert Group.objects.filter(name="Night Shift").count() == 1, "a file is applied once"


def test_a_file_with_errors_is_reported_and_cannot_be_applied(manager_client):
    document = importexport.export_directory()
    document["servers"][0]["smtp_inbound"]["tcp_port"] = 70000
    page = upload(manager_client, document).content.decode()
    assert "nothing can be imported" in page and 'name="apply"' not in page
    page = upload(manager_client, b"{not json").content.decode()
    assert "is not valid JSON" in page
