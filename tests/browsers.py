"""Headless Chromium for the browser tests: Debian's chromium (.ci/run installs it), or the tests skip; with
DOORSTEP_REQUIRE_BROWSER set (CI) a missing one is an error instead."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("DOORSTEP_REQUIRE_BROWSER"):
    raise RuntimeError("DOORSTEP_REQUIRE_BROWSER is set but Debian's chromium is not installed")

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)

# offline and quiet: nothing reaches out to the network on its own
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
