"""Load a small demo directory and (re)set the console's admin password, for `make run`."""
import secrets
import socket

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from directory import audit, forms, models, tls, validators

DEMO_SERVER = "mail1/Acme"
DEMO_DOMAIN = "acme.test"
DEMO_PERSON = "Jane Doe/Sales/Acme"
DEMO_INTERNET_PASSWORD = "demo-password"
"""Fixed, not random: the demo is for trying things out, and an SMTP client's settings should survive a restart."""


def this_host_name():
    """This host's fully qualified name when it is a valid one, else localhost."""
    name = socket.getfqdn()
    return name if validators.is_host_name(name) and "." in name else "localhost"


class Command(BaseCommand):
    help = "Create the demo directory (once) and print the console's admin account with a fresh password."

    def add_arguments(self, parser):
        parser.add_argument("--smtp-port", type=int, default=2525, help="SMTP Inbound TCP/IP port of the demo server.")
        parser.add_argument("--ssl-port", type=int, default=4465, help="SMTP Inbound SSL port of the demo server.")
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):
        with transaction.atomic():
            created = self.load_directory(options["smtp_port"], options["ssl_port"])
            password = self.reset_admin(options["username"])
        if created:
            self.stdout.write(f"Demo directory created: server {DEMO_SERVER}, person {DEMO_PERSON} <jane@{DEMO_DOMAIN}>.")
        self.stdout.write(f"Console admin: {options['username']}  password: {password}")
        person = models.Person.objects.filter(full_name=DEMO_PERSON).first()
        if person is not None and person.check_internet_password(DEMO_INTERNET_PASSWORD):
            self.stdout.write(f"Demo person for SMTP AUTH: {person.internet_address}  Internet password: {DEMO_INTERNET_PASSWORD}")

    def save(self, model, data, instance=None):
        form = forms.FORMS[model](data=data, instance=instance)
        if not form.is_valid():
            raise CommandError(f"demo {model._meta.model_name}: {form.errors.as_text()}")
        return audit.save_document(form, None, source="loaddemo")

    def load_directory(self, smtp_port, ssl_port):
        if models.Server.objects.filter(name=DEMO_SERVER).exists():
            return False
        host_name = this_host_name()
        certificate_pem, key_pem = tls.generate_self_signed(host_name, extra_names=("localhost", "127.0.0.1"))
        self.save(models.TLSCredentials, {"name": "mail1-selfsigned", "certificate_pem": certificate_pem, "private_key_pem": key_pem})
        self.save(models.Server, {
            "name": DEMO_SERVER, "host_name": host_name, "smtp_listener_enabled": True, "load_internet_sites": False,
            "listen_addresses": ["127.0.0.1"], "internet_authentication": models.InternetAuthentication.FEWER, "tls_credentials": "mail1-selfsigned",
            "smtp_inbound_tcp_port": smtp_port, "smtp_inbound_tcp_status": models.Status.ENABLED,
            "smtp_inbound_ssl_port": ssl_port, "smtp_inbound_ssl_status": models.Status.ENABLED,
            "smtp_outbound_tcp_port": 25, "smtp_outbound_tcp_status": models.OutboundTcpStatus.ENABLED,
            "smtp_outbound_ssl_port": 465, "smtp_outbound_ssl_status": models.Status.DISABLED,
        })
        self.save(models.ConfigurationSettings, {
            "local_domains": [DEMO_DOMAIN], "relay_auth": models.RelayAuth.DISABLED, "starttls_inbound": models.StartTlsInbound.ENABLED,
            "anti_relay_enforcement": models.AntiRelayEnforcement.EXTERNAL, "max_message_size_kb": 10240, "max_recipients": 100, "error_limit": 10,
            "internal_hosts": ["127.0.0.0/8", "::1"],
        })
        self.save(models.InternetSite, {
            "name": "Acme SMTP", "site_type": models.SiteType.SMTP_INBOUND, "organization": "Acme",
            "mapped_addresses": ["*"], "servers": [DEMO_SERVER], "tls_credentials": "mail1-selfsigned",
        })
        self.save(models.Person, {
            "full_name": DEMO_PERSON, "first_name": "Jane", "last_name": "Doe", "short_name": "jdoe",
            "internet_address": f"jane@{DEMO_DOMAIN}", "internet_password": DEMO_INTERNET_PASSWORD,
        })
        self.save(models.Group, {"name": "Mail Admins", "group_type": models.GroupType.MULTI_PURPOSE, "members": [DEMO_PERSON, "*/Sales/Acme"]})
        return True

    def reset_admin(self, username):
        password = secrets.token_urlsafe(12)
        user, _created = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        user.is_superuser = user.is_staff = user.is_active = True
        user.set_password(password)
        user.save()
        return password
