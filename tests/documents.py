"""One saved document of each type for the console's view tests, made without the audit trail so
that a test sees only the entries its own requests create."""
from directory import models, tls

PASSWORD = "Internet-secret-1234"
RELAY_PASSWORD = "relay-secret-5678"


def stored_credentials(name="mail1-cert", host_name="mail1.acme.test", days=397):
    certificate_pem, key_pem = tls.generate_self_signed(host_name, days)
    credentials = models.TLSCredentials(name=name, certificate_pem=certificate_pem, private_key_pem=key_pem)
    credentials.full_clean()
    credentials.save()
    return credentials


def make_documents(load_internet_sites: bool = False):
    """One document of each type, the server using the credentials, secrets stored; with ``load_internet_sites``,
    the server loads the Internet Site documents (the site-not-enabled rule applies)."""
    credentials = stored_credentials()
    server = models.Server.objects.create(name="mail1/Acme", host_name="mail1.acme.test", tls_credentials=credentials,
                                          load_internet_sites=load_internet_sites)
    configuration = models.ConfigurationSettings.objects.create(
        server=None, local_domains=["acme.test"], relay_host="relay.acme.test", relay_auth="required",
        relay_auth_name="mail1", relay_auth_password=RELAY_PASSWORD,
    )
    site = models.InternetSite.objects.create(name="Acme SMTP", organization="Acme")
    person = models.Person(full_name="Jane Doe/Sales/Acme", short_name="jdoe", internet_address="jane@acme.test")
    person.set_internet_password(PASSWORD)
    person.save()
    group = models.Group.objects.create(name="Mail Admins", members=["Jane Doe/Sales/Acme"])
    return {
        "server": server, "configurationsettings": configuration, "internetsite": site,
        "person": person, "group": group, "tlscredentials": credentials,
    }

