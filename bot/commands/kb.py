"""`doorstep kb ingest|remove|stats`: the knowledge base (see CONTRACT.md).

`ingest` prints one summary line per file on stdout (failures name the reason) and exits 2 if any file
failed; the rest of the batch is still ingested. Progress goes to stderr."""

from __future__ import annotations

import argparse
import json

from bot.cli import UserError
from knowledge.cli import IngestProgress, open_for_command


def _ingest(args: argparse.Namespace) -> int:
    _, service = open_for_command(args.index, ingest_sample_if_empty=False)
    try:
        with IngestProgress() as progress:
            report = service.ingest(
                args.paths, community=args.community, replace=args.replace, on_embed=progress.embedded
            )
        for r in report.files:
            print(r.line(), flush=True)
        print(report.summary())
        return 2 if report.failed else 0
    finally:
        service.close()


def _remove(args: argparse.Namespace) -> int:
    _, service = open_for_command(args.index, ingest_sample_if_empty=False)
    try:
        removed = service.remove(args.sources)
        for key in removed:
            print(f"removed    {key}")
        missing = [s for s in args.sources if not any(k.endswith("/" + s.split("/")[-1]) for k in removed)]
        if missing:
            raise UserError(f"not in the index: {', '.join(missing)}")
        return 0
    finally:
        service.close()


def _stats(args: argparse.Namespace) -> int:
    _, service = open_for_command(args.index, ingest_sample_if_empty=False)
    try:
        st = service.stats()
        if args.json:
            print(json.dumps(st, ensure_ascii=False))
            return 0
        print(
            f"index:      {st['index_dir']} ({st['index_bytes'] / 1048576:.1f} MB, embedding {st['embedding']})"
        )
        print(f"documents:  {st['documents']}")
        print(f"chunks:     {st['chunks']}")
        for community, c in sorted(st["communities"].items()):
            print(f"  {community or '(global)'}: {c['documents']} documents, {c['chunks']} chunks")
        for f in st["files"]:
            print(f"  {f['community'] or '-':<8} {f['source']}  《{f['title']}》 {f['chunks']} chunks")
        return 0
    finally:
        service.close()


def run(args: argparse.Namespace) -> int:
    return {"ingest": _ingest, "remove": _remove, "stats": _stats}[args.kb_command](args)
