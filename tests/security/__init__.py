"""Security tests: hostile input and attacks against the listener and the console (docs/design/security.md)."""
