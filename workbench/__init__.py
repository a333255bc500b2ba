"""The staff workbench (GET /staff/, CONTRACT.md "The staff workbench"): tickets, knowledge gaps, notices,
groups and figures for 社区工作者, 网格员, 物业 and 管理员, signed in with a password or a one-time link.

`mount_workbench(web, app)` adds it to `serve`'s web app. It reaches the rest of Doorstep only through
`workbench.ports.Backoffice`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

if TYPE_CHECKING:
    from bot.app import App
    from workbench.web import Workbench


def mount_workbench(web: FastAPI, app: App) -> Workbench:
    from workbench.ports import Backoffice
    from workbench.web import mount

    return mount(web, Backoffice(app))
