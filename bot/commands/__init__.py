"""One module per `doorstep` sub-command, each with `run(args: argparse.Namespace) -> int`."""
