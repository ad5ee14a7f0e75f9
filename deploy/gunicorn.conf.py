"""gunicorn settings for the console: ``gunicorn -c deploy/gunicorn.conf.py`` (deploy/smtp-console.service).

Each setting reads an environment variable so that the unit file, not this file, is what an
administrator edits; docs/reference/environment.md lists them.
"""
import os
from pathlib import Path

chdir = str(Path(__file__).resolve().parent.parent)
wsgi_app = "adminconsole.wsgi:application"
bind = os.environ.get("CONSOLE_BIND", "127.0.0.1:8000").split(",")
# Console pages are short database reads: a few synchronous workers serve a team of administrators.
workers = int(os.environ.get("CONSOLE_WORKERS", "3"))
timeout = int(os.environ.get("CONSOLE_TIMEOUT", "30"))
graceful_timeout = 20
# A worker is replaced after this many requests, so a slow leak never grows for weeks.
max_requests = 2000
max_requests_jitter = 200
# X-Forwarded-* headers are believed only from the reverse proxy in front (BEHIND_HTTPS_PROXY).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("CONSOLE_LOG_LEVEL", "info")
