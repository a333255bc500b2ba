"""The `doorstep` command (see CONTRACT.md). Each sub-command lives in bot/commands/<name>.py as
`run(args) -> int`; this module only parses arguments and turns user errors into one clear line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from bot.config import ConfigError
from core.errors import NotYetAvailable, UserError

__all__ = ["NotYetAvailable", "UserError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="doorstep", description="Doorstep (家门口): the assistant for residential WeChat groups")
    p.add_argument("--config", help="config file (default $DOORSTEP_CONFIG, then config/doorstep.yaml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    kb = sub.add_parser("kb", help="the knowledge base")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True, parser_class=_Parser)
    ing = kb_sub.add_parser("ingest", help="ingest files or folders")
    ing.add_argument("paths", nargs="+")
    ing.add_argument("--index")
    ing.add_argument("--replace", action="store_true", help="drop everything else from the index first")
    ing.add_argument(
        "--community", default="", help="the community these documents belong to (default: global)"
    )
    rm = kb_sub.add_parser("remove", help="remove documents by file name")
    rm.add_argument("sources", nargs="+")
    rm.add_argument("--index")
    st = kb_sub.add_parser("stats", help="documents, chunks, index size")
    st.add_argument("--index")
    st.add_argument("--json", action="store_true")

    ask = sub.add_parser("ask", help="answer a question (or one per line from stdin)")
    ask.add_argument("question", nargs="?")
    ask.add_argument("--index")
    ask.add_argument("--json", action="store_true")
    ask.add_argument("--community", default="")

    cl = sub.add_parser("classify", help="what the bot would do with a group message")
    cl.add_argument("message", nargs="?")
    cl.add_argument("--json", action="store_true")
    cl.add_argument(
        "--retrain", action="store_true", help="first fold the staff's corrections in (as `train`)"
    )

    tr = sub.add_parser("train", help="fold the staff's ticket corrections into the classifier")
    tr.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", help="retrieval quality on a question set")
    ev.add_argument("qa")
    ev.add_argument("--index")
    ev.add_argument("--k", type=int, default=5)
    ev.add_argument("--json", action="store_true")

    sub.add_parser("check", help="validate the configuration files and print a summary")

    sub.add_parser("serve", help="the bot, its channels, the admin API and the built-in ticket backend")

    be = sub.add_parser("backend", help="the built-in Open311 ticket backend alone")
    be.add_argument("--host", default="127.0.0.1")
    be.add_argument("--port", type=int, default=8311)
    be.add_argument("--db", help="SQLAlchemy URL (default: the configured store)")

    sub.add_parser("demo", help="a scripted offline scenario through the whole pipeline")

    con = sub.add_parser("console", help="chat with the bot in the terminal")
    con.add_argument("--group", default="幸福里3号楼")
    con.add_argument("--as", dest="sender", default="u_console")
    con.add_argument("--name", default="居民")

    bench = sub.add_parser("bench", help="the benchmark suite")
    bench.add_argument("--quick", action="store_true")
    return p


def _command_module(args: argparse.Namespace) -> str:
    return "kb" if args.command == "kb" else args.command.replace("-", "_")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else getattr(logging, os.environ.get("DOORSTEP_LOG", "INFO")),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        # one line per HTTP request (Chroma server, the ticket backend) drowns what the commands say
        logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
        # alembic announces its plugins on import: lines before a command's one-line error (CONTRACT.md)
        logging.getLogger("alembic").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
        if args.config:
            os.environ["DOORSTEP_CONFIG"] = args.config
        try:
            module = importlib.import_module(f"bot.commands.{_command_module(args)}")
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("bot.commands"):
                raise NotYetAvailable(
                    f"'doorstep {args.command}' is not yet available in this version"
                ) from None
            raise
        return int(module.run(args) or 0)
    except (UserError, ConfigError) as e:
        print(f"doorstep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
