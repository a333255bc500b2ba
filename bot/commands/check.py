"""`doorstep check`: validate the configuration files; a wrong file gets one line naming file and key."""

from __future__ import annotations

import argparse

from bot.config import load_config


def run(args: argparse.Namespace) -> int:
    c = load_config()
    print(f"config: {c.path}")
    print(f"groups: {len(c.groups.groups)} in {len(c.groups.communities)} communities")
    print(f"staff: {len(c.staff.staff)}")
    print(f"services: {len(c.services.services)}")
    print(f"lexicon terms: {len(c.lexicon.terms)}; FAQ entries: {len(c.faq.faq)}")
    print(f"store: {c.database_url}")
    print(f"index: {c.main.index.chroma_url or c.index_dir}")
    print("ok")
    return 0
