"""Response headers the console adds to those of Django's own security middleware."""
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    # Bootstrap draws its select arrows, check marks and toggler icon as data: SVG images; the favicon is data:,
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
"""Scripts and styles only from the console's own static files: no inline script, style or handler.
``object-src 'none'`` and ``base-uri 'none'`` are the minimum of OWASP ASVS 5.0 V3.4.3; Django 5.2 has
no built-in CSP."""


DEBUG_ERROR_POLICY = CONTENT_SECURITY_POLICY + "; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"
"""Under DEBUG only, Django's own 404 and 500 pages (inline styles and a script) are allowed to show as designed."""


class ContentSecurityPolicyMiddleware:
    """Set Content-Security-Policy on every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        response = self.get_response(request)
        debug_page = settings.DEBUG and response.status_code in (404, 500)
        response.headers.setdefault("Content-Security-Policy", DEBUG_ERROR_POLICY if debug_page else CONTENT_SECURITY_POLICY)
        return response
