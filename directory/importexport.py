"""The whole directory as one JSON document, out and in (spec section 7).

Import validates every document with the console's own forms (``directory.forms.FORMS``) and writes
through ``directory.audit``, so a document is held to the same rules and leaves the same trail
whichever way it arrives; it applies all or nothing. Export is deterministic (keys in the order of
the format, documents sorted by name) so that files can be compared and kept in version control.
"""
from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from django.contrib.auth.hashers import identify_hasher
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils.translation import gettext_lazy as _

from directory import audit, models, names, validators
from directory.forms import FORMS

if TYPE_CHECKING:
    from django.forms import ModelForm
    from django.utils.functional import Promise

    from directory.audit import User

FORMAT = 1
SOURCE = "importdirectory"
DEFAULT_CONFIGURATION = "*"
CREATE_BATCH = 1000
"""New documents are created this many at a time: few queries, and few validated forms held in memory."""


def describe(value: object) -> Promise:
    """The JSON type of a value, as an error message names it."""
    if value is None:
        return _("null")
    if isinstance(value, bool):
        return _("true/false")
    if isinstance(value, float):
        return _("a decimal number")
    if isinstance(value, int):
        return _("a number")
    if isinstance(value, str):
        return _("text")
    if isinstance(value, list):
        return _("a list")
    return _("an object")


class Kind:
    """How one key is written in JSON: what import accepts, and what export writes."""

    expected = ""

    def accepts(self, value: object) -> bool:
        raise NotImplementedError

    def found(self, value: object) -> str | Promise:
        return describe(value)

    def problem(self, value: object) -> str | None:
        """The message for a value of the wrong type, or None."""
        if self.accepts(value):
            return None
        return _("Expected %(expected)s, not %(found)s.") % {"expected": self.expected, "found": self.found(value)}

    def dump(self, instance: models.Document, name: str) -> object:
        return getattr(instance, name)

    def to_form(self, value: object) -> object:
        return value

    def apply(self, instance: models.Document, name: str, value: object) -> None:
        """Set a value the forms do not take (secrets) directly on the document."""
        setattr(instance, name, value)


class Text(Kind):
    expected = _("text")

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)


class OptionalText(Kind):
    expected = _("text or null")

    def accepts(self, value: object) -> bool:
        return value is None or isinstance(value, str)


class Number(Kind):
    expected = _("a whole number")

    def accepts(self, value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class Boolean(Kind):
    expected = _("true or false")

    def accepts(self, value: object) -> bool:
        return isinstance(value, bool)


class Lines(Kind):
    expected = _("a list of text entries")

    def accepts(self, value: object) -> bool:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)

    def found(self, value: object) -> str | Promise:
        if isinstance(value, list):
            wrong = next(item for item in value if not isinstance(item, str))
            return _("a list holding %(found)s") % {"found": describe(wrong)}
        return describe(value)

    def dump(self, instance: models.Document, name: str) -> list:
        return list(getattr(instance, name))


class Routes(Kind):
    expected = _('a list of routes ({"domain": ..., "host": ...})')

    def accepts(self, value: object) -> bool:
        return isinstance(value, list) and all(isinstance(item, dict) for item in value)

    def dump(self, instance: object, name: str) -> list:
        """Each route with its keys in the format's order; an older ``tls`` key is written as ``tls_policy``."""
        routes = map(validators.normalize_route, getattr(instance, name))
        return [{key: route[key] for key in validators.ROUTE_KEYS if key in route} for route in routes]


class Reference(Kind):
    """Another document, by name; null for none."""

    expected = _("a name or null")

    def __init__(self, target: str) -> None:
        self.target = target

    def accepts(self, value: object) -> bool:
        return value is None or isinstance(value, str)

    def dump(self, instance: models.Document, name: str) -> str | None:
        related = getattr(instance, name)
        return related.name if related is not None else None


class ServerOrDefault(Reference):
    """The server of a Configuration Settings document; ``*`` is the default for all servers."""

    expected = _("a server name, or * for the default")

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)

    def dump(self, instance: models.Document, name: str) -> str:
        return super().dump(instance, name) or DEFAULT_CONFIGURATION

    def to_form(self, value: str) -> str | None:
        return None if value == DEFAULT_CONFIGURATION else value


class PlainPassword(Text):
    """An Internet password in plain text, hashed on import; the same password keeps its hash."""

    def apply(self, instance: models.Person, name: str, value: str) -> None:
        if not (value and instance.check_internet_password(value)):
            instance.set_internet_password(value)


class PasswordHash(Text):
    """A stored Django password hash, taken as is when this server recognises its algorithm."""

    def problem(self, value: object) -> str | None:
        problem = super().problem(value)
        if problem is None and value:
            try:
                identify_hasher(value)
            except ValueError:
                return _("This is not a password hash this server recognises (such as pbkdf2_sha256$...).")
        return problem


TEXT, OPTIONAL_TEXT, NUMBER, BOOLEAN, LINES, ROUTES = Text(), OptionalText(), Number(), Boolean(), Lines(), Routes()


@dataclass(frozen=True)
class Key:
    """One key of the format and the model field it maps to."""

    path: tuple
    kind: Kind
    field: str = ""
    secret: bool = False  # exported only with --include-secrets
    exported: bool = True  # False: accepted on import only
    on_form: bool = True  # False: set on the document, not given to the form

    def __post_init__(self):
        if not self.field:
            object.__setattr__(self, "field", "_".join(self.path))

    @property
    def name(self) -> str:
        return ".".join(self.path)


def keys(section: str | None = None, **kinds: Kind) -> tuple[Key, ...]:
    """Keys whose field names are their paths joined by ``_`` (``smtp_inbound.tcp_port``)."""
    prefix = (section,) if section else ()
    return tuple(Key(prefix + (name,), kind) for name, kind in kinds.items())


@dataclass(frozen=True)
class DocumentType:
    """One list of the format: its documents' model, keys, and the key that names each document."""

    key: str
    model: type
    keys: tuple
    identity: str = "name"
    lookup: str = "name"
    hierarchical: bool = False  # the identity is a Domino name, compared in abbreviated form
    exclusive: tuple = ()  # pairs of keys that may not be given together

    @property
    def form(self) -> type[ModelForm]:
        return FORMS[self.model]

    @property
    def identity_key(self) -> Key:
        return self.key_at((self.identity,))

    def key_at(self, path: tuple) -> Key | None:
        return next((key for key in self.keys if key.path == path), None)

    @property
    def sections(self) -> set[tuple]:
        return {key.path[:-1] for key in self.keys if len(key.path) > 1}

    def path_of(self, where: str, field_name: str | None) -> str:
        """The JSON path of a form or model field; the document's own for non-field errors and anything else."""
        key = next((key for key in self.keys if key.field == field_name and key.exported), None)
        return f"{where}.{key.name}" if key else where

    def normalised(self, name: str) -> str:
        return (names.abbreviate(name) if self.hierarchical else name).lower()

    def find(self, name: str) -> models.Document | None:
        """The existing document of this name: the same spelling first, else the same without regard to case."""
        manager = self.model.objects
        if isinstance(self.identity_key.kind, ServerOrDefault) and name == DEFAULT_CONFIGURATION:
            return manager.filter(server__isnull=True).first()
        if self.hierarchical:
            name = names.abbreviate(name)
        return manager.filter(**{self.lookup: name}).first() or manager.filter(**{f"{self.lookup}__iexact": name}).first()

    def dump(self, instance: models.Document, include_secrets: bool) -> dict:
        document = {}
        for key in self.keys:
            if not key.exported or (key.secret and not include_secrets):
                continue
            target = document
            for part in key.path[:-1]:
                target = target.setdefault(part, {})
            target[key.path[-1]] = key.kind.dump(instance, key.field)
        return document


SERVERS = DocumentType("servers", models.Server, (
    *keys(
        name=TEXT, host_name=TEXT, smtp_listener_enabled=BOOLEAN, load_internet_sites=BOOLEAN, listen_addresses=LINES,
        access_server=LINES, not_access_server=LINES, internet_authentication=TEXT,
        tls_credentials=Reference("tls_credentials"),
    ),
    *keys(
        "smtp_inbound", tcp_port=NUMBER, tcp_status=TEXT, enforce_server_access=BOOLEAN, tcp_auth_name_password=BOOLEAN,
        tcp_auth_anonymous=BOOLEAN, ssl_port=NUMBER, ssl_status=TEXT, ssl_auth_client_certificate=BOOLEAN,
        ssl_auth_name_password=BOOLEAN, ssl_auth_anonymous=BOOLEAN,
    ),
    *keys("smtp_outbound", tcp_port=NUMBER, tcp_status=TEXT, ssl_port=NUMBER, ssl_status=TEXT),
), hierarchical=True)

CONFIGURATIONS = DocumentType("configurations", models.ConfigurationSettings, (
    *keys(
        server=ServerOrDefault("servers"), local_domains=LINES, smtp_outside_local_domain=BOOLEAN, relay_host=TEXT,
        relay_auth=TEXT, relay_auth_name=TEXT,
    ),
    Key(("relay_auth_password",), TEXT, secret=True, on_form=False),
    *keys(
        relay_auth_allow_cleartext=BOOLEAN, relay_tls_policy=TEXT, relay_ca_bundle=TEXT, routes=ROUTES,
        max_message_size_kb=NUMBER, max_recipients=NUMBER, starttls_inbound=TEXT,
        size_extension=BOOLEAN, pipelining=BOOLEAN, eightbitmime=BOOLEAN, help_command=BOOLEAN, vrfy_command=BOOLEAN,
        anti_relay_enforcement=TEXT, internal_hosts=LINES, anti_relay_exclude_hosts=LINES,
        authenticated_users_relay=BOOLEAN, relay_allow_domains=LINES, relay_deny_domains=LINES,
        connection_allow_hosts=LINES, connection_deny_hosts=LINES, error_limit=NUMBER, administrators=LINES,
    ),
), identity="server", lookup="server__name", hierarchical=True)

INTERNET_SITES = DocumentType("internet_sites", models.InternetSite, (
    Key(("name",), TEXT),
    Key(("type",), TEXT, field="site_type"),
    *keys(
        organization=TEXT, mapped_addresses=LINES, servers=LINES, tcp_auth_name_password=BOOLEAN,
        tcp_auth_anonymous=BOOLEAN, ssl_auth_client_certificate=BOOLEAN, ssl_auth_name_password=BOOLEAN,
        ssl_auth_anonymous=BOOLEAN, tls_credentials=Reference("tls_credentials"),
    ),
))

PEOPLE = DocumentType("people", models.Person, (
    *keys(full_name=TEXT, first_name=TEXT, last_name=TEXT, short_name=TEXT, internet_address=OPTIONAL_TEXT),
    Key(("internet_password",), PlainPassword(), exported=False, on_form=False),
    Key(("internet_password_hash",), PasswordHash(), field="internet_password", secret=True, on_form=False),
), identity="full_name", lookup="full_name", hierarchical=True,
    exclusive=((("internet_password",), ("internet_password_hash",)),))

GROUPS = DocumentType("groups", models.Group, keys(name=TEXT, group_type=TEXT, members=LINES))

TLS_CREDENTIALS = DocumentType("tls_credentials", models.TLSCredentials, (
    *keys(name=TEXT, certificate_pem=TEXT),
    Key(("private_key_pem",), TEXT, secret=True),
))

EXPORT_ORDER = (SERVERS, CONFIGURATIONS, INTERNET_SITES, PEOPLE, GROUPS, TLS_CREDENTIALS)
"""The order of the format (spec section 7)."""

IMPORT_ORDER = (TLS_CREDENTIALS, INTERNET_SITES, SERVERS, CONFIGURATIONS, PEOPLE, GROUPS)
"""Documents referred to come first. Sites come before servers because a server's SSL port may rely
on the credentials of a site that hosts it."""

TYPES = {doc_type.key: doc_type for doc_type in EXPORT_ORDER}


def export_directory(include_secrets: bool = False) -> dict:
    """The whole directory in the import/export format, as a JSON-able dict."""
    result = {"format": FORMAT}
    for doc_type in EXPORT_ORDER:
        references = [key.field for key in doc_type.keys if isinstance(key.kind, Reference)]
        documents = [doc_type.dump(instance, include_secrets) for instance in doc_type.model.objects.select_related(*references)]
        result[doc_type.key] = sorted(documents, key=lambda document: document[doc_type.identity])
    return result


def dumps(document: dict) -> str:
    """The file text: two-space indents, keys in the format's order, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


class Existing:
    """The documents of one type already in the directory, read once, found by name as ``DocumentType.find``
    finds them (the same spelling first, else the same without regard to case), and their unique values."""

    def __init__(self, doc_type: DocumentType):
        self.doc_type = doc_type
        references = [key.field for key in doc_type.keys if isinstance(key.kind, Reference)]
        documents = list(doc_type.model.objects.select_related(*references))
        self.exact, self.folded = {}, {}
        if self.by_name:
            for document in documents:  # in the model's order, as ``.first()`` picks
                name = getattr(document, doc_type.lookup)
                self.exact.setdefault(name, document)
                self.folded.setdefault(name.lower(), document)
        self.unique = models.UniqueValues(doc_type.model, documents)

    @property
    def by_name(self) -> bool:
        """Configuration Settings are found by their server's name (or ``*``): few, looked up in the database."""
        return "__" not in self.doc_type.lookup

    def find(self, name: str) -> models.Document | None:
        """The stored document of this name, or None."""
        if not self.by_name:
            return self.doc_type.find(name)
        if self.doc_type.hierarchical:
            name = names.abbreviate(name)
        return self.exact.get(name) or self.folded.get(name.lower())


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


@dataclass
class Report:
    """What an import did or would do: errors and warnings as ``(path, message)``, counts per type in the format's order."""

    errors: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    tallies: dict = field(default_factory=dict)


class FileError(ValueError):
    """A file that is not a JSON document at all: the command and the console page say why in one line."""


def _refuse_constant(name: str) -> NoReturn:
    """Python reads NaN and Infinity, which JSON (RFC 8259 s 6) does not have."""
    raise ValueError(_("%(value)s is not a JSON value") % {"value": name})


def loads(text: str, file: str) -> object:
    """The parsed import file ``file`` (its name, for the messages), or FileError saying why it is not JSON."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise FileError(_("%(file)s nests lists or objects too deeply to be a directory file.") % {"file": file}) from None
    except ValueError as error:
        # JSONDecodeError, and numbers too long to convert (sys.get_int_max_str_digits).
        raise FileError(_("%(file)s is not valid JSON: %(error)s") % {"file": file, "error": error}) from None


def import_directory(document: object, replace: bool = False, dry_run: bool = False, user: User = None) -> Report:
    """Validate and apply a parsed import file; on any error, or with ``dry_run``, roll everything back.

    ``user`` is the console user importing from the console's page, recorded in the audit trail.
    """
    report = Report()
    with transaction.atomic():
        Importer(report, replace, user).run(document)
        if report.errors or dry_run:
            transaction.set_rollback(True)
    return report


class Importer:
    """Applies one file inside the caller's transaction, recording every problem in the report."""

    def __init__(self, report: Report, replace: bool, user: User = None) -> None:
        self.report = report
        self.replace = replace
        self.user = user
        self.listed = {}  # type key -> pks of existing documents the file lists
        self.imported = {}  # type key -> {pk: where} of documents saved or unchanged
        self.seen = {}  # type key -> {normalised name: where}
        self.failed = {}  # type key -> {normalised name: where} of documents with errors
        self.existing = None  # Existing documents of the type being imported
        self.new_forms = []  # (where, form) of valid new documents of that type, created together
        self.new_initial = {}  # type key -> what the console's New form shows, read once

    def error(self, path: str, message: str | Promise) -> None:
        self.report.errors.append((path, message))

    def run(self, document: object) -> None:
        if not isinstance(document, dict):
            self.error("", _("The file must hold a JSON object with “format”: %(format)s and lists of documents.") % {"format": FORMAT})
            return
        self.check_format(document)
        for name in document:
            if name != "format" and name not in TYPES:
                self.unknown_key(name, name, ["format", *TYPES])
        for doc_type in IMPORT_ORDER:
            if doc_type.key in document:
                self.import_list(doc_type, document[doc_type.key])
        if self.replace:
            for doc_type in reversed(IMPORT_ORDER):
                if doc_type.key in self.imported:
                    self.delete_unlisted(doc_type)
            self.check_still_there()
        if not self.report.errors:
            self.collect_warnings()
        self.report.tallies = {key: self.report.tallies[key] for key in TYPES if key in self.report.tallies}

    def check_format(self, document: dict) -> None:
        if "format" not in document:
            self.error("format", _("This key is required: this importer reads format %(format)s.") % {"format": FORMAT})
        elif type(document["format"]) is not int or document["format"] != FORMAT:
            self.error("format", _("Unsupported format %(found)s: this importer reads format %(format)s.") % {
                "found": json.dumps(document["format"]), "format": FORMAT,
            })

    def unknown_key(self, path: str, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            self.error(path, _("Unknown key (did you mean “%(key)s”?).") % {"key": close[0]})
        else:
            self.error(path, _("Unknown key."))

    def import_list(self, doc_type: DocumentType, documents: object) -> None:
        if not isinstance(documents, list):
            self.error(doc_type.key, _("Expected a list of documents, not %(found)s.") % {"found": describe(documents)})
            return
        self.report.tallies[doc_type.key] = Tally()
        self.listed[doc_type.key] = set()
        self.imported[doc_type.key] = {}
        self.seen[doc_type.key] = {}
        self.failed[doc_type.key] = {}
        self.existing = Existing(doc_type)
        with models.unique_values_in_memory(self.existing.unique):
            for index, document in enumerate(documents):
                where = f"{doc_type.key}[{index}]"
                errors_before = len(self.report.errors)
                name = self.import_document(doc_type, where, document)
                if len(self.report.errors) > errors_before and isinstance(name, str):
                    self.failed[doc_type.key].setdefault(doc_type.normalised(name), where)
        self.create_new(doc_type)

    def read(self, doc_type: DocumentType, document: dict, where: str, prefix: tuple = ()) -> tuple[dict, set]:
        """The values of the known keys of well-typed values, and the paths that had a problem."""
        values, problems = {}, set()
        for name, value in document.items():
            path = prefix + (name,)
            label = ".".join((where, *path))
            key = doc_type.key_at(path)
            if key is not None:
                problem = key.kind.problem(value)
                if problem:
                    self.error(label, problem)
                    problems.add(key)
                else:
                    values[key] = value
            elif path in doc_type.sections:
                if isinstance(value, dict):
                    inner_values, inner_problems = self.read(doc_type, value, where, path)
                    values.update(inner_values)
                    problems |= inner_problems
                else:
                    self.error(label, _("Expected an object, not %(found)s.") % {"found": describe(value)})
            else:
                known = [key.path[-1] for key in doc_type.keys if key.path[:-1] == prefix]
                known += [section[-1] for section in doc_type.sections if section[:-1] == prefix]
                self.unknown_key(label, name, known)
        return values, problems

    def import_document(self, doc_type: DocumentType, where: str, document: object) -> object:
        """Validate one document with its console form and save it; return its name when it has one."""
        if not isinstance(document, dict):
            self.error(where, _("Expected an object, not %(found)s.") % {"found": describe(document)})
            return None
        values, problems = self.read(doc_type, document, where)
        identity = doc_type.identity_key
        if identity not in values:
            if identity not in problems:
                self.error(f"{where}.{identity.name}", _("This key is required: it names the document."))
            return None
        name = values[identity]
        for first, second in doc_type.exclusive:
            first_key, second_key = doc_type.key_at(first), doc_type.key_at(second)
            if first_key in values and second_key in values:
                self.error(f"{where}.{second_key.name}", _("Give %(first)s or %(second)s, not both.") % {
                    "first": first_key.name, "second": second_key.name,
                })
                del values[second_key]
                problems.add(second_key)
        seen = self.seen[doc_type.key]
        if doc_type.normalised(name) in seen:
            self.error(f"{where}.{identity.name}", _("“%(name)s” is already in this file, at %(other)s.") % {
                "name": name, "other": seen[doc_type.normalised(name)],
            })
            return name
        seen[doc_type.normalised(name)] = where

        instance = self.existing.find(name)
        stored = None
        if instance is not None:
            self.listed[doc_type.key].add(instance.pk)
            stored = audit.snapshot(instance)
        form = self.bound_form(doc_type, instance, values)
        form.check_warnings = False  # reported once for the whole directory, by ``collect_warnings``
        problems |= self.check_applied(where, form.instance, values)
        valid = form.is_valid()
        if not valid:
            self.report_form_errors(doc_type, where, form, values, problems)
        if problems or not valid:
            return name
        # Later documents of the file must not take this one's unique values (it is saved later, in bulk).
        self.existing.unique.add(form.instance)
        self.save(doc_type, where, form, stored)
        return name

    def bound_form(self, doc_type: DocumentType, instance: models.Document | None, values: dict) -> ModelForm:
        """The console form of the document, its missing keys filled from the current values."""
        if instance is None:
            instance = doc_type.model()
            if doc_type.key not in self.new_initial:
                self.new_initial[doc_type.key] = doc_type.form(instance=instance).initial
            initial = copy.deepcopy(self.new_initial[doc_type.key])  # what the console's New form shows
        else:
            initial = doc_type.form(instance=instance).initial
        data = {}
        for key in doc_type.keys:
            if not key.on_form:
                continue
            if key in values:
                data[key.field] = key.kind.to_form(values[key])
            elif isinstance(key.kind, Reference):
                data[key.field] = key.kind.to_form(key.kind.dump(instance, key.field))
            elif key.field in initial:
                data[key.field] = initial[key.field]
        for key, value in values.items():
            if not key.on_form:
                key.kind.apply(instance, key.field, value)
        return doc_type.form(data=data, instance=instance)

    def check_applied(self, where: str, instance: models.Document, values: dict) -> set[Key]:
        """Values set on the document rather than through its form (secrets) still obey their field's limits."""
        wrong = set()
        for key in values:
            if key.on_form:
                continue
            try:
                instance._meta.get_field(key.field).clean(getattr(instance, key.field), instance)
            except ValidationError as error:
                for message in error.messages:
                    self.error(f"{where}.{key.name}", message)
                wrong.add(key)
        return wrong

    def report_form_errors(self, doc_type: DocumentType, where: str, form: ModelForm, values: dict, problems: set[Key]) -> None:
        wrong_fields = {key.field for key in problems}
        for field_name, errors in form.errors.as_data().items():
            if field_name in wrong_fields:
                continue
            key = next((key for key in doc_type.keys if key.field == field_name and key.on_form), None)
            path = f"{where}.{key.name}" if key else doc_type.path_of(where, field_name)
            codes = {error.code for error in errors}
            if key is not None and isinstance(key.kind, Reference) and "invalid_choice" in codes:
                self.error(path, self.missing_reference(key.kind.target, values.get(key)))
                continue
            if "required" in codes:
                # The other errors of an empty required field only follow from it.
                errors = [error for error in errors if error.code == "required"]
            for error in errors:
                for message in error.messages:
                    self.error(path, message)

    def missing_reference(self, target: str, name: str | None) -> str:
        """Say which document is missing, or which earlier document of the file failed."""
        target_type = TYPES[target]
        failed = self.failed.get(target, {}).get(target_type.normalised(name))
        if failed:
            return _("“%(name)s” is not imported because %(where)s has errors.") % {"name": name, "where": failed}
        return _("No %(document)s named “%(name)s” in the directory or earlier in this file.") % {
            "document": target_type.model._meta.verbose_name, "name": name,
        }

    def save(self, doc_type: DocumentType, where: str, form: ModelForm, stored: dict | None) -> None:
        """Save a changed document now; keep a new one to create with the others of its type."""
        tally = self.report.tallies[doc_type.key]
        instance = form.instance
        if instance.pk is None:
            self.new_forms.append((where, form))
            if len(self.new_forms) >= CREATE_BATCH:
                self.create_new(doc_type)
            return
        if audit.snapshot(instance) == stored:
            tally.unchanged += 1
            self.imported[doc_type.key][instance.pk] = where
            return
        saved = self.save_one(where, form)
        if saved is not None:
            self.imported[doc_type.key][saved.pk] = where
            tally.updated += 1

    def save_one(self, where: str, form: ModelForm) -> models.Document | None:
        """Save one document through the audit trail; a refusal of the database is an error of the document."""
        try:
            return audit.save_document(form, self.user, source=SOURCE)
        except IntegrityError as error:
            self.error(where, _("The database refused this document: %(error)s") % {"error": error})
            return None

    def create_new(self, doc_type: DocumentType) -> None:
        """Create the valid new documents of this type together; if the database refuses the batch, one by
        one, so that the error names the document."""
        pending, self.new_forms = self.new_forms, []
        if not pending:
            return
        try:
            with transaction.atomic():
                created = audit.save_new_documents([form for _where, form in pending], self.user, source=SOURCE)
            places = [where for where, _form in pending]
        except IntegrityError:
            created, places = [], []
            for where, form in pending:
                form.instance.pk = None
                form.instance._state.adding = True
                saved = self.save_one(where, form)
                if saved is not None:
                    created.append(saved)
                    places.append(where)
        for document, where in zip(created, places, strict=True):
            self.imported[doc_type.key][document.pk] = where
        self.report.tallies[doc_type.key].created += len(created)

    def delete_unlisted(self, doc_type: DocumentType) -> None:
        """``--replace``: delete the documents of this type that the file does not list."""
        keep = self.listed[doc_type.key] | set(self.imported[doc_type.key])
        for instance in doc_type.model.objects.exclude(pk__in=keep):
            label = doc_type.identity_key.kind.dump(instance, doc_type.identity_key.field)
            try:
                audit.delete_document(instance, self.user, source=SOURCE)
            except ProtectedError as error:
                users = ", ".join(sorted(str(user) for user in error.protected_objects))
                self.error(doc_type.key, _("--replace cannot delete “%(name)s”, which the file does not list: %(users)s still use it.") % {
                    "name": label, "users": users,
                })
            else:
                self.report.tallies[doc_type.key].deleted += 1

    def check_still_there(self) -> None:
        """A Configuration Settings document goes with its server: catch one that ``--replace`` took with it."""
        for doc_type in IMPORT_ORDER:
            imported = self.imported.get(doc_type.key, {})
            present = set(doc_type.model.objects.filter(pk__in=imported).values_list("pk", flat=True))
            for pk, where in imported.items():
                if pk not in present:
                    self.error(where, _("--replace deleted this document with a document that the file does not list."))

    def collect_warnings(self) -> None:
        """Warnings of the directory as the import leaves it, so documents that refer to each other agree."""
        for doc_type in IMPORT_ORDER:
            imported = self.imported.get(doc_type.key, {})
            documents = doc_type.model.objects.in_bulk(list(imported))
            warnings = doc_type.model.warnings_of(documents.values())
            for pk, where in imported.items():
                for field_name, _code, message in warnings[pk]:
                    self.report.warnings.append((doc_type.path_of(where, field_name), message))
