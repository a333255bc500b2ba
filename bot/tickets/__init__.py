"""Tickets: the GeoReport v2 client, the durable outbox, the report desk, the webhook receiver.

`build_desk(services)` wires the desk from the config: an external GeoReport v2 server when
`tickets.open311_url` (or $DOORSTEP_OPEN311_URL) is set, else the built-in backend that `serve` mounts at
`/open311/v2` on its own HTTP port.
"""

from __future__ import annotations

from bot.services import Services
from bot.tickets.client import GeoReportClient
from bot.tickets.desk import ReportDesk

BUILTIN_POLL_SECONDS = 300.0  # the built-in backend pushes webhooks; polling is the safety net
EXTERNAL_POLL_SECONDS = 60.0


def builtin_base_url(services: Services) -> str:
    http = services.config.main.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    return f"http://{host}:{services.config.http_port}/open311/v2"


def build_desk(services: Services) -> ReportDesk:
    t = services.config.main.tickets
    if t.open311_url:
        client = GeoReportClient(t.open311_url, services.config.ticket_api_key, t.jurisdiction_id)
        desk = ReportDesk(services, client, poll_interval_seconds=EXTERNAL_POLL_SECONDS)
    else:
        client = GeoReportClient(
            builtin_base_url(services), services.config.ticket_api_key, t.jurisdiction_id
        )
        desk = ReportDesk(services, client, poll_interval_seconds=BUILTIN_POLL_SECONDS)
    desk.outbox.base_delay, desk.outbox.max_delay = t.retry_base_seconds, t.retry_max_seconds
    desk.outbox.lease_seconds = desk.notifier.claim_lease_seconds = t.lease_seconds
    desk.inflight_grace_seconds = t.recovery_grace_seconds
    return desk


__all__ = ["GeoReportClient", "ReportDesk", "build_desk"]
