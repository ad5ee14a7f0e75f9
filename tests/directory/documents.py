"""Builders of directory documents for tests: the data a console form posts, and saved documents."""
from django import forms

from directory import audit, models, tls
from directory.forms import FORMS

JANE = "Jane Doe/Sales/Acme"

# What the admin must type on a new document before saving it; the rest keeps its default.
REQUIRED = {
    models.Server: {"name": "mail1/Acme", "host_name": "mail1.acme.test"},
    models.ConfigurationSettings: {},
    models.InternetSite: {"name": "Acme SMTP"},
    models.Person: {"full_name": JANE},
    models.Group: {"name": "Mail Admins"},
}


def typed(value):
    """A value as the browser sends it: text, lists one entry per line, None as blank."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(value)
    return str(value)


def browser_value(bound):
    """What a browser submits for a rendered field: a select with no option selected sends its first one."""
    value = bound.value()
    if value in (None, "") and isinstance(bound.field, forms.ChoiceField) and bound.field.choices:
        value = next(iter(bound.field.choices))[0]
    return typed(value)


def form_data(model, instance=None, **changes):
    """What the console's form for ``model`` posts when the admin types ``changes`` and keeps the rest."""
    form = FORMS[model](instance=instance)
    data = {bound.html_name: browser_value(bound) for bound in form}
    data.update({name: typed(value) for name, value in changes.items()})
    return data


def bound_form(model, instance=None, **changes):
    return FORMS[model](form_data(model, instance, **changes), instance=instance)


def save(model, instance=None, user=None, **changes):
    """Save through the form and the audit trail, as the console does; fail loudly on errors."""
    form = bound_form(model, instance, **changes)
    assert form.is_valid(), form.errors.as_data()
    return audit.save_document(form, user)


def make_credentials(name="mail1-cert", host_name="mail1.acme.test", **kwargs):
    certificate_pem, private_key_pem = tls.generate_self_signed(host_name, **kwargs)
    return save(models.TLSCredentials, name=name, certificate_pem=certificate_pem, private_key_pem=private_key_pem)


def make_server(name="mail1/Acme", host_name="mail1.acme.test", **changes):
    return save(models.Server, name=name, host_name=host_name, **changes)
