"""Validators for the entries of the directory's list fields (hosts, addresses, domains, names)."""
import ipaddress
import re
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext_lazy as _

from directory import names

HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)


def is_host_name(value: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and hyphens, 253 characters at most."""
    value = value.rstrip(".")
    if not value or len(value) > 253:
        return False
    labels = value.split(".")
    if all(label.isdigit() for label in labels):
        return False
    return all(HOST_LABEL.match(label) for label in labels)


def is_ip_or_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def validate_host_name(value: str) -> None:
    if not is_host_name(value):
        raise ValidationError(_("“%(value)s” is not a valid host name."), code="invalid_host", params={"value": value})


def validate_ip_address(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(
            _("“%(value)s” is not a valid IP address."), code="invalid_ip", params={"value": value}
        ) from None


def validate_ip_or_network(value: str) -> None:
    """An IP address or a CIDR range such as 192.0.2.0/24 with no host bits set."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise ValidationError(
            _("“%(value)s” is not a valid IP address or CIDR range (such as 192.0.2.0/24)."),
            code="invalid_cidr",
            params={"value": value},
        ) from None


def validate_host_entry(value: str) -> None:
    """An IP address, a CIDR range, a host name, or ``.acme.test`` for any host of a domain (as Domino); the
    error names all four, as the field's help text does."""
    if "/" in value or ":" in value or value.replace(".", "").isdigit():
        try:
            ipaddress.ip_network(value, strict=True)
            return
        except ValueError:
            pass
    elif is_host_name(value.removeprefix(".") if value.startswith(".") and value.count(".") > 1 else value):
        return
    raise ValidationError(
        _("“%(value)s” is neither an IP address, a CIDR range, a host name nor a .domain suffix."),
        code="invalid_host",
        params={"value": value},
    )


def validate_mapped_address(value: str) -> None:
    """``*``, an IP address or a host name of a local interface."""
    if value == "*":
        return
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not is_host_name(value):
            raise ValidationError(
                _("“%(value)s” is neither *, an IP address nor a host name."),
                code="invalid_host",
                params={"value": value},
            ) from None


def split_host_port(value: str, default_port: int | None = None) -> tuple[str, int | None]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address into (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _sep, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise ValueError(value)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, None
    if port is None:
        return host, default_port
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(value)
    return host, int(port)


def validate_host_port(value: str) -> None:
    """``host`` or ``host:port`` with a port from 1 to 65535."""
    try:
        host, _port = split_host_port(value)
    except ValueError:
        raise ValidationError(
            _("“%(value)s” is not host or host:port with a port from 1 to 65535."),
            code="invalid_host_port",
            params={"value": value},
        ) from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not is_host_name(host):
            raise ValidationError(
                _("“%(value)s” is not a valid host name or IP address."), code="invalid_host", params={"value": host}
            ) from None


def validate_domain(value: str) -> None:
    """A mail domain, optionally written ``*.acme.test`` or ``.acme.test`` for its subdomains."""
    bare = value[2:] if value.startswith("*.") else value[1:] if value.startswith(".") else value
    if not is_host_name(bare) or "." not in bare.strip("."):
        raise ValidationError(
            _("“%(value)s” is not a valid domain (such as acme.test or *.acme.test)."),
            code="invalid_domain",
            params={"value": value},
        )


def validate_name(value: str) -> None:
    """A Domino name: no empty component between slashes, and Domino's rules for each component."""
    if not names.is_valid_name(value):
        raise ValidationError(
            _("“%(value)s” is not a valid name (components separated by /, none empty)."),
            code="invalid_name",
            params={"value": value},
        )
    validate_name_rules(value)


def validate_name_rules(value: str) -> None:
    """Domino's rules for a name's components (``names.name_problems``): the console and the import share them."""
    errors = []
    for problem, component, limit in names.name_problems(value):
        shown = component if len(component) <= 40 else component[:40] + "…"
        if problem == names.TOO_MANY_UNITS:
            errors.append(ValidationError(
                _("“%(value)s” has more than %(limit)s organizational units."),
                code="invalid_name_units", params={"value": value[:100], "limit": limit},
            ))
        elif problem == names.COMPONENT_CHARACTERS:
            errors.append(ValidationError(
                _("“%(component)s”: a name may hold letters, digits, spaces and & - . ' _ only (components separated by /)."),
                code="invalid_name_character", params={"component": shown},
            ))
        else:
            errors.append(ValidationError(
                _("“%(component)s” is longer than %(limit)s characters, the most Domino allows for this part of a name."),
                code="invalid_name_length", params={"component": shown, "limit": limit},
            ))
    if errors:
        raise ValidationError(errors)


def validate_name_or_wildcard(value: str) -> None:
    """An access-list entry: a name, a group name, ``*`` or ``*/Org``."""
    if value == "*" or value.startswith("*/"):
        if value != "*" and not names.is_valid_name(value[2:]):
            raise ValidationError(
                _("“%(value)s” is not a valid wildcard (such as */Sales/Acme)."),
                code="invalid_name",
                params={"value": value},
            )
        if value != "*":
            validate_name_rules(value[2:])
        return
    validate_name(value)


def validate_hierarchical_name(value: str) -> None:
    if not names.is_valid_name(value, hierarchical=True):
        raise ValidationError(
            _("“%(value)s” is not a hierarchical name such as mail1/Acme."),
            code="invalid_name",
            params={"value": value},
        )
    validate_name_rules(value)


def validate_server_entry(value: str) -> None:
    """A server name or ``*`` (all servers), as in a Site document's hosting list."""
    if value != "*":
        validate_hierarchical_name(value)


MAX_ENTRY_LENGTH = 255
"""The longest entry of a list field: a Domino name (80 + 4 × 32 + 64 with its slashes) or a host name
(253) fits; anything longer is an error, not something to store and show."""


@deconstructible
class EachValidator:
    """Check every item of a list field with an entry validator (deconstructible for migrations)."""

    def __init__(self, entry_validator: Callable[[str], None]) -> None:
        self.entry_validator = entry_validator

    def __call__(self, values: object) -> None:
        errors = []
        if not isinstance(values, list):
            raise ValidationError(_("Enter a list of entries."), code="invalid_list")
        for value in values:
            try:
                if not isinstance(value, str):
                    raise ValidationError(
                        _("“%(value)s” is not text."), code="invalid_entry", params={"value": value}
                    )
                if len(value) > MAX_ENTRY_LENGTH:
                    raise ValidationError(
                        _("“%(start)s…” is longer than %(limit)s characters (it has %(length)s)."), code="entry_too_long",
                        params={"start": value[:40], "limit": MAX_ENTRY_LENGTH, "length": len(value)},
                    )
                self.entry_validator(value)
            except ValidationError as error:
                errors.extend(error.error_list)
        if errors:
            raise ValidationError(errors)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EachValidator) and other.entry_validator is self.entry_validator


TLS_POLICIES = ("opportunistic", "verified")
"""TLS policies of an outbound destination (spec 5.5): opportunistic (encrypt when offered, any certificate,
else clear text) or verified (TLS required, the certificate checked for the host name)."""
LEGACY_ROUTE_TLS = {"any": "opportunistic", "verify": "verified"}
"""A route's older key ``tls`` and its values, still read (spec 7) and mapped to ``tls_policy``."""
ROUTE_KEYS = ("domain", "host", "tls_policy", "ca_file")


def normalize_route(route: object) -> object:
    """A route with its older ``tls`` key (``any``/``verify``) read as ``tls_policy``; anything else as is.

    An unknown older value is kept, so that validation names it.
    """
    if not isinstance(route, dict) or "tls" not in route or "tls_policy" in route:
        return route
    normalized = {key: value for key, value in route.items() if key != "tls"}
    normalized["tls_policy"] = LEGACY_ROUTE_TLS.get(route["tls"], route["tls"])
    return normalized


def validate_ca_bundle_path(value: str) -> None:
    """A CA bundle is read on the router's host: its path must be absolute."""
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ValidationError(
            _("“%(value)s”: a CA bundle must be the absolute path of a PEM file on the router's host."),
            code="invalid_ca_bundle", params={"value": value},
        )


def validate_routes(routes: list) -> None:
    """SMTP connection routes: a list of {"domain": pattern, "host": host or host:port}, each with an
    optional "tls_policy" ("opportunistic" or "verified", the older "tls" key read too) and "ca_file"
    (absolute path of a CA bundle to trust, with the verified policy)."""
    errors = []
    for route in map(normalize_route, routes or []):
        if not isinstance(route, dict) or not {"domain", "host"} <= set(route) <= set(ROUTE_KEYS):
            errors.append(ValidationError(
                _("Each route needs a domain and a host, and may have tls_policy and ca_file."), code="invalid_route",
            ))
            continue
        for validator, value in ((validate_domain, route["domain"]), (validate_host_port, route["host"])):
            try:
                validator(str(value))
            except ValidationError as error:
                errors.extend(error.error_list)
        tls_policy, ca_file = route.get("tls_policy", TLS_POLICIES[0]), route.get("ca_file", "")
        if tls_policy not in TLS_POLICIES:
            errors.append(ValidationError(
                _("“%(value)s”: the TLS policy must be opportunistic or verified."), code="invalid_route_tls",
                params={"value": tls_policy},
            ))
        if not isinstance(ca_file, str) or (ca_file and not ca_file.startswith("/")):
            errors.append(ValidationError(
                _("“%(value)s”: ca_file must be the absolute path of a CA bundle on the router's host."),
                code="invalid_route_ca_file", params={"value": ca_file},
            ))
        elif ca_file and tls_policy != "verified":
            errors.append(ValidationError(
                _("The route to %(host)s names a CA bundle but its TLS policy is opportunistic (any certificate): "
                  "choose verified, or remove the bundle."),
                code="route_ca_file_with_any", params={"host": route["host"]},
            ))
    if errors:
        raise ValidationError(errors)
