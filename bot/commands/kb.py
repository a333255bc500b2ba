"""`doorstep kb ingest|remove|stats`: the knowledge base (see CONTRACT.md).

`ingest` prints one summary line per file on stdout (failures name the reason) and exits 2 if any file
failed; the rest of the batch is still ingested. Progress goes to stderr.

`ingest` and `remove` are the index's one writer for their run; while a `doorstep serve` holds the index they
hand the work to it instead (knowledge/handoff.py), so it answers from the new knowledge at once."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager

from bot.cli import UserError
from bot.config import load_config
from knowledge.cli import (
    IngestProgress,
    index_dir_for,
    ingest_via_server,
    open_for_command,
    remove_via_server,
    summary_via_server,
)
from knowledge.handoff import HandoffError, ServerClient, Writer, index_writer


@contextmanager
def _writer(index: str | None) -> Iterator[Writer]:
    config = load_config()
    directory = index_dir_for(config, index)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--index {directory}: not a directory")
    try:
        with index_writer(directory, shared=bool(config.main.index.chroma_url)) as writer:
            yield writer
    except HandoffError as e:
        raise UserError(str(e)) from None


def _ingest(args: argparse.Namespace) -> int:
    with _writer(args.index) as writer:
        if writer.server is not None:
            with ServerClient(writer.server) as client:
                report = ingest_via_server(client, args.paths, community=args.community, replace=args.replace)
                print(summary_via_server(report, client))
            return 2 if report.failed else 0
        return _ingest_here(args)


def _ingest_here(args: argparse.Namespace) -> int:
    _, service = open_for_command(load_config(), args.index, ingest_sample_if_empty=False)
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
    with _writer(args.index) as writer:
        if writer.server is not None:
            with ServerClient(writer.server) as client:
                removed = remove_via_server(client, args.sources)
        else:
            _, service = open_for_command(load_config(), args.index, ingest_sample_if_empty=False)
            try:
                removed = service.remove(args.sources)
            finally:
                service.close()
    for key in removed:
        print(f"removed    {key}")
    missing = [s for s in args.sources if not any(k.endswith("/" + s.split("/")[-1]) for k in removed)]
    if missing:
        raise UserError(f"not in the index: {', '.join(missing)}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    _, service = open_for_command(load_config(), args.index, ingest_sample_if_empty=False)
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
