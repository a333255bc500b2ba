"""The workbench's own settings: the `workbench:` block of config/doorstep.yaml, validated by this model when
bot/app.py builds the workbench (a wrong key is one line naming `workbench.key`)."""

from __future__ import annotations

from pydantic import Field

from core.community import Strict


class WorkbenchSettings(Strict):
    """How long a sign-in lasts."""

    session_hours: float = Field(12.0, gt=0)  # a session ends this long after sign-in, whatever happens
    idle_minutes: float = Field(120.0, gt=0)  # and earlier when unused this long
    link_minutes: float = Field(15.0, gt=0)  # a one-time sign-in link sent to a staff member's chat
