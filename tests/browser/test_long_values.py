"""A list entry as long as the directory allows, without a space, wraps inside its cell: the audit trail,
the dashboard and the document page stay as wide as the window (the audit's 100,000-character member made
them a million pixels wide)."""
import pytest
from django.contrib.auth.models import User

from directory import models
from directory.validators import MAX_ENTRY_LENGTH
from tests.browser.test_server_document import PASSWORD, log_in
from tests.directory.documents import save

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_longest_allowed_member_wraps_and_no_page_grows_wider_than_the_window(page, live_server):
    User.objects.create_superuser("admin", password=PASSWORD)
    member = "*/" + "A" * 40 + "/" + "B" * 32 + "/" + "C" * 32 + "/" + "D" * 32 + "/" + "E" * 32 + "/" + "F" * 64
    assert len(member) <= MAX_ENTRY_LENGTH
    group = save(models.Group, name="Wide Group", group_type="multi_purpose", members=[member, "x" * 80])
    page.set_viewport_size({"width": 1024, "height": 800})
    log_in(page, live_server)
    for url in ("/audit/", "/", group.get_absolute_url()):
        page.goto(f"{live_server.url}{url}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{url} is {overflow} px wider than the window"
