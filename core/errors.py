"""Errors that cross a seam: raised by one part, handled by another (the CLI, a handler, the admin API)."""


class UserError(Exception):
    """Bad arguments or unreadable input: one line to stderr, exit 2, no traceback (the `doorstep` command)."""


class NotYetAvailable(UserError):
    pass


class GroupError(ValueError):
    """A binding or a target that cannot be used; the message is for staff, in Chinese."""


class NoticeError(ValueError):
    """A notice that cannot be made or changed; the message is for staff, in Chinese."""


class CorrectionError(ValueError):
    """A ticket correction that cannot be made; the message is for staff, in Chinese."""
