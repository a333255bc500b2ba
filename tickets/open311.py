"""The `open311` ticket backend: a GeoReport v2 client that works with any Open311 server (the built-in backend
or a city's 12345 system). `plugin` makes it the `tickets.backend: open311` of the config (core/registry.py).

JSON format throughout; `Idempotency-Key` is sent with every POST (honoured by the built-in backend, ignored
by servers that do not know it; see docs/tickets.md for how the outbox stays safe with those).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from core.ports import Created, Photo, RemoteRequest, TicketBackend, TicketBackendError
from core.registry import TicketBackendContext, TicketBackendPlugin

log = logging.getLogger(__name__)


class GeoReportError(TicketBackendError):
    """A GeoReport v2 request failed; `errors` is the server's error list."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        transient: bool = True,
    ) -> None:
        super().__init__(message, status=status, transient=transient)
        self.errors = errors or []


class GeoReportClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        jurisdiction_id: str = "",
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.jurisdiction_id = jurisdiction_id
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._definitions: dict[str, set[str]] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def _params(self, **kw: Any) -> dict[str, Any]:
        p = {k: v for k, v in kw.items() if v not in (None, "")}
        if self.jurisdiction_id:
            p["jurisdiction_id"] = self.jurisdiction_id
        return p

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        url = f"{self.base_url}/{path}"
        try:
            r = await self._http.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise GeoReportError(f"{method} {path}: {type(e).__name__}: {e}", transient=True) from None
        if r.status_code >= 400:
            try:
                body = r.json()
                errors = body if isinstance(body, list) else [body]
            except ValueError:
                errors = [{"code": r.status_code, "description": r.text[:200]}]
            desc = "; ".join(str(e.get("description", "")) for e in errors if isinstance(e, dict))
            transient = r.status_code >= 500 or r.status_code in (408, 425, 429)
            raise GeoReportError(
                f"{method} {path}: HTTP {r.status_code} {desc}",
                status=r.status_code,
                errors=errors,
                transient=transient,
            )
        try:
            return r.json()
        except ValueError:
            raise GeoReportError(f"{method} {path}: the answer is not JSON", status=r.status_code) from None

    # --- the spec -----------------------------------------------------------------------------------

    async def services(self) -> list[dict[str, Any]]:
        return list(await self._call("GET", "services.json", params=self._params()))

    async def attribute_codes(self, service_code: str) -> set[str]:
        """The attribute codes a service accepts (cached); empty when it has none or the server will not say."""
        if service_code not in self._definitions:
            try:
                d = await self._call("GET", f"services/{service_code}.json", params=self._params())
                self._definitions[service_code] = {str(a.get("code")) for a in d.get("attributes", [])}
            except GeoReportError as e:
                if e.transient:
                    raise
                self._definitions[service_code] = set()
        return self._definitions[service_code]

    async def create(
        self,
        *,
        service_code: str,
        description: str,
        address: str = "",
        lat: float | None = None,
        lon: float | None = None,
        attributes: dict[str, str] | None = None,
        photo: Photo | None = None,
        idempotency_key: str = "",
        first_name: str = "",
        account_id: str = "",
        phone: str = "",
    ) -> Created:
        accepted = await self.attribute_codes(service_code)
        form: dict[str, Any] = self._params(
            api_key=self.api_key,
            service_code=service_code,
            description=description[:4000],
            address_string=address,
            first_name=first_name,
            account_id=account_id,
            phone=phone[:64],  # the reporter's own number, for the staff who work the ticket
        )
        if lat is not None and lon is not None:
            form["lat"], form["long"] = f"{lat:.6f}", f"{lon:.6f}"
        for k, v in (attributes or {}).items():
            if k in accepted:
                form[f"attribute[{k}]"] = v
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        files = {"media": (photo.name, photo.data, photo.mime)} if photo is not None else None
        body = await self._call("POST", "requests.json", data=form, files=files, headers=headers)
        first = body[0] if isinstance(body, list) and body else body if isinstance(body, dict) else {}
        rid = first.get("service_request_id")
        token = first.get("token")
        if rid is None and token is None:
            raise GeoReportError(
                "POST requests.json: neither service_request_id nor token in the answer", transient=False
            )
        return Created(str(rid) if rid is not None else None, str(token) if token is not None else None)

    async def get(self, service_request_id: str) -> RemoteRequest | None:
        try:
            body = await self._call("GET", f"requests/{service_request_id}.json", params=self._params())
        except GeoReportError as e:
            if e.status == 404:
                return None
            raise
        return RemoteRequest.from_doc(body[0]) if body else None

    async def get_many(self, ids: list[str]) -> list[RemoteRequest]:
        out: list[RemoteRequest] = []
        for i in range(0, len(ids), 50):
            body = await self._call(
                "GET", "requests.json", params=self._params(service_request_id=",".join(ids[i : i + 50]))
            )
            out.extend(RemoteRequest.from_doc(d) for d in body)
        return out

    async def token(self, token: str) -> str | None:
        try:
            body = await self._call("GET", f"tokens/{token}.json", params=self._params())
        except GeoReportError as e:
            if e.status == 404:
                return None
            raise
        rid = body[0].get("service_request_id") if body else None
        return str(rid) if rid else None

    # --- beyond the spec (the built-in backend) ---------------------------------------------------------

    async def update_status(
        self, service_request_id: str, status: str, notes: str = "", agency: str = ""
    ) -> RemoteRequest:
        body = await self._call(
            "POST",
            f"requests/{service_request_id}/status.json",
            data=self._params(
                api_key=self.api_key, status=status, status_notes=notes, agency_responsible=agency
            ),
        )
        return RemoteRequest.from_doc(body[0])

    async def subscribe(self, url: str) -> None:
        await self._call("POST", "subscriptions.json", data=self._params(api_key=self.api_key, url=url))


# --- the plugin -------------------------------------------------------------------------------------------------

BUILTIN_POLL_SECONDS = 300.0  # the built-in backend pushes webhooks; polling is the safety net
EXTERNAL_POLL_SECONDS = 60.0


class Open311Settings(BaseModel):
    """`tickets.open311_url`, `tickets.api_key`, `tickets.jurisdiction_id` (or `$DOORSTEP_OPEN311_URL`,
    `$DOORSTEP_OPEN311_API_KEY`); no URL: the built-in backend that `serve` mounts at /open311/v2."""

    model_config = ConfigDict(extra="forbid")

    url: str = ""
    api_key: str = ""
    jurisdiction_id: str = ""


def build(settings: Open311Settings, ctx: TicketBackendContext) -> TicketBackend:
    return GeoReportClient(
        settings.url or ctx.builtin_url,
        settings.api_key or ctx.api_key,
        settings.jurisdiction_id or ctx.jurisdiction_id,
    )


plugin = TicketBackendPlugin(
    name="open311",
    settings=Open311Settings,
    build=build,
    poll_seconds=lambda s: EXTERNAL_POLL_SECONDS if s.url else BUILTIN_POLL_SECONDS,
)
