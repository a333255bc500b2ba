"""Plugins written as a third party would: registered by configuration alone (tests/test_plugins.py)."""
