"""Doorstep runtime: channels, router, throttled sender, storage, the HTTP side and the CLI."""
