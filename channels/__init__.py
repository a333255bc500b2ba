"""Channels, one package each (see docs/architecture.md)."""
