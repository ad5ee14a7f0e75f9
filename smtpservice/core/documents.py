"""The one mapping from directory documents to the settings snapshot the policy reads.

Pure: it reads the attributes of document instances, saved or not, and runs no query of its own, so
the listener (``store.snapshot.load_snapshot``), the change preview (a document being edited) and
the served-version check (``BINDING_FIELDS``) all derive the snapshot the same way.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from smtpservice.core import policy

BINDING_FIELDS = (
    "smtp_listener_enabled", "listen_addresses", "tls_credentials", "load_internet_sites",
    "smtp_inbound_tcp_port", "smtp_inbound_tcp_status", "smtp_inbound_ssl_port", "smtp_inbound_ssl_status",
)
"""The Server document fields ``policy.bindings`` reads: versions equal on these bind the same ports."""


OPTION_FIELDS = {
    "tcp_name_password": "tcp_auth_name_password",
    "tcp_anonymous": "tcp_auth_anonymous",
    "ssl_client_certificate": "ssl_auth_client_certificate",
    "ssl_name_password": "ssl_auth_name_password",
    "ssl_anonymous": "ssl_auth_anonymous",
}
"""``policy.AuthOptions`` field: the document field (a Site's, or a Server's after "smtp_inbound_")."""


def auth_options(source: Any, prefix: str = "") -> policy.AuthOptions:
    """The five authentication options of a Server document (``prefix`` "smtp_inbound_") or a Site document."""
    return policy.AuthOptions(**{option: getattr(source, prefix + name) for option, name in OPTION_FIELDS.items()})


def _credentials_name(document: Any) -> str | None:
    return document.tls_credentials.name if document.tls_credentials_id else None


def server_settings(server: Any) -> dict:
    """The snapshot fields a Server document decides (every one of them, so an unsaved document can replace them)."""
    return {
        "server_name": server.name,
        "host_name": server.host_name,
        "smtp_listener_enabled": server.smtp_listener_enabled,
        "load_internet_sites": server.load_internet_sites,
        "listen_addresses": tuple(server.listen_addresses),
        "access_server": tuple(server.access_server),
        "not_access_server": tuple(server.not_access_server),
        "internet_authentication": server.internet_authentication,
        "tls_credentials_name": _credentials_name(server),
        "inbound": policy.InboundPorts(
            tcp_port=server.smtp_inbound_tcp_port,
            tcp_status=server.smtp_inbound_tcp_status,
            enforce_server_access=server.smtp_inbound_enforce_server_access,
            options=auth_options(server, "smtp_inbound_"),
            ssl_port=server.smtp_inbound_ssl_port,
            ssl_status=server.smtp_inbound_ssl_status,
        ),
        "outbound": policy.OutboundPorts(
            tcp_port=server.smtp_outbound_tcp_port,
            tcp_status=server.smtp_outbound_tcp_status,
            ssl_port=server.smtp_outbound_ssl_port,
            ssl_status=server.smtp_outbound_ssl_status,
        ),
    }


def site_snapshot(site: Any) -> policy.SiteSnapshot:
    return policy.SiteSnapshot(
        name=site.name, mapped_addresses=tuple(site.mapped_addresses), options=auth_options(site),
        tls_credentials_name=_credentials_name(site),
    )


def config_snapshot(document: Any, server: Any) -> policy.ConfigSnapshot:
    """The Configuration Settings that apply to ``server``, field for field (a blank Local Internet domains
    means the domain of the server's host name)."""
    values = {option.name: getattr(document, option.name) for option in fields(policy.ConfigSnapshot)}
    values["local_domains"] = document.effective_local_domains(server)
    values["routes"] = tuple(
        policy.Route(route["domain"], route["host"], route.get("tls", "verify"), route.get("ca_file", ""))
        for route in document.routes
    )
    return policy.ConfigSnapshot(**values)


def credentials(documents: list) -> dict:
    return {
        document.name: policy.TlsCredentialsSnapshot(
            name=document.name, certificate_pem=document.certificate_pem, private_key_pem=document.private_key_pem,
            host_names=tuple(document.host_names), not_after=document.not_after,
        )
        for document in documents if document is not None
    }


def build(server: Any, configuration: Any, configuration_source: str, sites: list, people: tuple, groups: dict,
          revision: int) -> policy.SettingsSnapshot:
    """The snapshot of ``server`` from its documents."""
    return policy.SettingsSnapshot(
        **server_settings(server),
        revision=revision,
        sites=tuple(site_snapshot(site) for site in sites),
        config=config_snapshot(configuration, server),
        config_source=configuration_source,
        people=people,
        groups=groups,
        credentials=credentials([server.tls_credentials if server.tls_credentials_id else None,
                                 *(site.tls_credentials if site.tls_credentials_id else None for site in sites)]),
    )
