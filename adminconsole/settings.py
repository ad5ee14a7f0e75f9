"""Settings of the SMTP console, read from environment variables.

SQLite is the default database; DATABASE_URL selects another (PostgreSQL for several servers).
Helpers fail loudly on bad values, as healthchecks' settings do.
"""
import os
from pathlib import Path

import dj_database_url
import xstatic.pkg.bootstrap
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"


def envbool(name, default):
    """Return a boolean from an environment variable; anything but a clear yes/no is an error."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def envint(name, default):
    """Return an integer from an environment variable, refusing anything else."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envlist(name, default):
    """Return a comma-separated list from an environment variable."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envsecret(name, default=None):
    """Read a secret from NAME or from the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def split_syslog_address(value):
    """``host:port`` of a syslog server, for LOG_SYSLOG (UDP port 514 when none is given)."""
    host, _colon, port = value.rpartition(":") if ":" in value else (value, "", "514")
    if not port.isdigit():
        raise ImproperlyConfigured(f"LOG_SYSLOG must be a socket path or host:port, not {value!r}")
    return (host, int(port))


DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "adminconsole",
    "directory",
    "smtpservice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # WhiteNoise serves the collected static files (collectstatic) from the console's own process.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "adminconsole.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "adminconsole.accounts.TwoFactorRequiredMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "adminconsole.urls"
WSGI_APPLICATION = "adminconsole.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "adminconsole.context_processors.console",
            ],
        },
    },
]

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var"))
DATABASE_URL = os.environ.get("DATABASE_URL", "")
SQLITE_OPTIONS = {
    # WAL lets the console read while the listener writes; FULL makes a commit durable before the 250
    # that acknowledges a message; IMMEDIATE takes the write lock at BEGIN, so that processes writing at
    # once (listener workers, router) wait for each other instead of failing on a lock upgrade.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=envint("CONN_MAX_AGE", 0))}
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
else:
    # The data folder is made here, so that `manage.py migrate` works in a fresh clone without make.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "directory.sqlite3",
            "OPTIONS": dict(SQLITE_OPTIONS),
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
# Two-factor authentication (TOTP, django-otp): any console user may turn it on for their account; with
# this setting a Manager must, and is sent to set it up before any other page (docs/console.md).
CONSOLE_TOTP_REQUIRED_FOR_MANAGERS = envbool("CONSOLE_TOTP_REQUIRED_FOR_MANAGERS", False)
OTP_TOTP_ISSUER = "SMTP console"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr", _("French"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "static-collected"))
# WhiteNoise reads STATIC_ROOT when the first request comes; before any `collectstatic` it is an empty folder.
# A daemon whose file system is read-only (ProtectSystem=strict) serves no static files and need not make it.
try:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass
# Bootstrap comes from the XStatic-Bootstrap package and is served locally, never from a CDN.
STATICFILES_DIRS = [("bootstrap", xstatic.pkg.bootstrap.BASE_DIR), BASE_DIR / "static"]
# Hashed, compressed file names that browsers may cache for ever (WhiteNoise); `collectstatic` writes them.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = os.environ.get("CRISPY_TEMPLATE_PACK", "bootstrap5")

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Sessions expire: two hours idle, and at browser close.
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 2 * 60 * 60)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True

# Login throttling (django-axes): per account and address.
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("AXES_COOLOFF_MINUTES", 15) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = envbool("AXES_ENABLED", True)

# Security headers; HTTPS settings are on unless DEBUG or explicitly turned off.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Preloading commits the whole parent domain to HTTPS in every browser: the operator opts in with
# SECURE_HSTS_PRELOAD=1 when submitting it, so `check --deploy` need not ask (security.W021).
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_HTTPS_PROXY", False) else None

# Outbound router (smtpservice.router.service, docs/design/outbound.md).
ROUTER_MESSAGE_LIFETIME_HOURS = envint("ROUTER_MESSAGE_LIFETIME_HOURS", 120)
ROUTER_RETRY_SECONDS = envint("ROUTER_RETRY_SECONDS", 300)
ROUTER_RETRY_MAX_SECONDS = envint("ROUTER_RETRY_MAX_SECONDS", 4 * 60 * 60)
ROUTER_LEASE_SECONDS = envint("ROUTER_LEASE_SECONDS", 120)
ROUTER_SMTP_TIMEOUT = envint("ROUTER_SMTP_TIMEOUT", 60)

# Logs go to stderr (systemd's journal keeps them); LOG_FORMAT=json writes one JSON object a line, and
# LOG_SYSLOG=/dev/log (or host:port) sends them to syslog as well. docs/reference/environment.md.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOG_SYSLOG = os.environ.get("LOG_SYSLOG", "")
LOG_HANDLERS = ["console", "syslog"] if LOG_SYSLOG else ["console"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"client_errors_without_traceback": {"()": "adminconsole.logformat.ClientErrorsWithoutTraceback"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "adminconsole.logformat.JsonFormatter"},
        "syslog": {"format": "%(name)s[%(process)d]: %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["client_errors_without_traceback"],
        },
        **({"syslog": {
            "class": "logging.handlers.SysLogHandler", "formatter": "json" if LOG_FORMAT == "json" else "syslog",
            "address": LOG_SYSLOG if LOG_SYSLOG.startswith("/") else split_syslog_address(LOG_SYSLOG),
            "facility": "mail",
        }} if LOG_SYSLOG else {}),
    },
    "loggers": {
        "smtpservice": {"handlers": LOG_HANDLERS, "level": os.environ.get("SMTP_LOG_LEVEL", "INFO")},
        "directory": {"handlers": LOG_HANDLERS, "level": "INFO"},
        "django.request": {"handlers": LOG_HANDLERS, "level": "WARNING", "propagate": False},
    },
}
