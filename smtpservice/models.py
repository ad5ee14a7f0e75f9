"""Bookkeeping of the SMTP service: the directory revision the listener watches."""
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class DirectoryRevision(models.Model):
    """One row counting directory changes, so a running listener sees a change with one cheap query."""

    SINGLETON = 1

    revision = models.PositiveBigIntegerField(_("revision"), default=0)
    changed = models.DateTimeField(_("last change"), default=timezone.now)

    class Meta:
        verbose_name = _("directory revision")
        verbose_name_plural = _("directory revision")

    def __str__(self):
        return str(self.revision)
