"""Security tests: hostile input and attacks against the listener and the console (docs/security.md)."""
