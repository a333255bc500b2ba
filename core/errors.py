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


class StatusError(ValueError):
    """A staff action on a ticket (status, split, note) that cannot be carried out; the message is for staff, in
    Chinese."""


class FAQError(ValueError):
    """An FAQ entry staff wrote that cannot be saved; the message is for staff, in Chinese."""


class UploadRefused(Exception):
    """A knowledge upload that cannot be taken: `message` says why in Chinese (staff read it), `reason` in English
    (the log, what `kb ingest` prints), `status` is the HTTP status."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or message


class KnowledgeUnavailable(Exception):
    """The knowledge base cannot be used in this process now (still loading, or not loaded); the message is for
    staff, in Chinese."""
