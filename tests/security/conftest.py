"""The listener's fixtures (real listener on loopback, documents saved through their forms) for the SMTP security tests."""
from tests.smtpservice.conftest import *  # noqa: F401,F403
