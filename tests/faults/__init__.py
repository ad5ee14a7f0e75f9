"""Fault tests: the listener killed, the database locked, unavailable or full; no message is lost (docs/design/security.md)."""
