"""Errors the `doorstep` command turns into one clear line and exit 2 (kept apart from bot.cli so that
`python -m bot.cli` and the console script share one class)."""


class UserError(Exception):
    """Bad arguments or unreadable input: one line to stderr, exit 2, no traceback."""


class NotYetAvailable(UserError):
    pass
