"""WSGI entry point of the console."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminconsole.settings")
application = get_wsgi_application()
