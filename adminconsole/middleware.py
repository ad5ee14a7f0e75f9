"""Response headers the console adds to those of Django's own security middleware."""

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


class ContentSecurityPolicyMiddleware:
    """Set Content-Security-Policy on every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
