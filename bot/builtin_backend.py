"""The built-in GeoReport v2 backend (backend/, a product of its own) wired to the bot: its settings from the
bot's config, and `serve` mounting it at /open311/v2 with the webhook receiver."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from backend import Backend, BackendSettings, create_backend_app
from backend.api import Service as BackendService
from bot.config import Config
from tickets.webhook import WEBHOOK_PATH, webhook_router

if TYPE_CHECKING:
    from bot.app import App


def backend_settings(
    config: Config, db_url: str | None = None, *, api_keys: list[str] | None = None
) -> BackendSettings:
    """The built-in backend's settings from the bot's config (`serve` mounts it, `doorstep backend` runs it
    alone): its own database next to the bot's, the keys and webhook secret the bot uses."""
    t = config.main.tickets
    return BackendSettings(
        db_url=db_url or f"sqlite:///{config.data_dir / 'open311.db'}",
        api_keys=api_keys if api_keys is not None else config.api_keys,
        services=[
            BackendService(
                service_code=s.service_code,
                service_name=s.service_name,
                description=s.description,
                group=s.group,
                keywords=tuple(s.keywords),
                agency=s.agency,
            )
            for s in config.service_list
        ],
        jurisdiction_id=t.jurisdiction_id,
        webhook_secret=config.webhook_secret,
    )


def mount_tickets(web: FastAPI, app: App) -> None:
    """Add the webhook receiver and, unless an external backend is configured, the built-in backend."""
    cfg = app.config
    web.include_router(webhook_router(app.desk, cfg.webhook_secret))
    if cfg.main.tickets.backend != "open311" or cfg.main.tickets.open311_url:
        return
    # the bot's clock: the backend's timestamps and the receiver's freshness checks read the same time
    backend = Backend(backend_settings(cfg), now=app.clock.now)
    http = cfg.main.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    backend.subscribe(f"http://{host}:{cfg.http_port}{WEBHOOK_PATH}")
    web.mount("/open311/v2", create_backend_app(backend, manage_lifecycle=False, prefix=""))
    app.desk.embedded_backend = backend
