"""What the directory alone decides, worked out once per directory revision and language.

Every saved document bumps the revision (``smtpservice.store.snapshot.bump_revision``), so a new
revision recomputes; the language is in the key because the results hold translated text, and the
hour because some facts (a certificate about to expire) depend on time. Pages that show such facts
on every view (the dashboard, the Server document) stay fast without reading the whole directory.
"""
from django.utils import timezone
from django.utils.translation import get_language

_FACTS: dict = {}
LIMIT = 512


def directory_fact(revision: int, key: tuple, compute):
    """``compute()`` for this revision, language and hour, from memory when already worked out."""
    full_key = (revision, get_language(), timezone.now().strftime("%Y%m%d%H"), *key)
    if full_key not in _FACTS:
        if len(_FACTS) >= LIMIT:
            _FACTS.clear()
        _FACTS[full_key] = compute()
    return _FACTS[full_key]
