"""The GeoReport v2 API: services, service definitions, service requests (create, list, get), tokens; and
beyond the spec, staff status updates (with a note and the agency), photos served as media_url, and webhook
subscriptions. Every route answers JSON or XML by its suffix; every error is the spec's error list.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, FastAPI, File, Form, Header, Path, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.formats import Format, error_response, render, w3c
from backend.models import Media, ServiceRequest, StatusUpdate, Subscriber, ensure_schema, make_engine, utcnow
from backend.utf8form import Utf8FormMiddleware
from backend.webhooks import WebhookSender, enqueue
from pii import coarse_coordinate, coarse_place, mask_pii

log = logging.getLogger(__name__)

GEOREPORT_PATH = "/open311/v2"  # where the contract puts GeoReport v2: `{base}/open311/v2`
MAX_DESCRIPTION = 4000  # the spec's limit
MAX_MEDIA_BYTES = 5 * 1024 * 1024
MAX_RESULTS = 1000  # the spec's default cap on GET requests
DEFAULT_WINDOW = timedelta(days=90)  # GET requests without dates: the last 90 days, as the spec suggests
STATUSES = ("open", "closed")
IMAGE_MAGIC = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


Fmt = Annotated[Format, Path(description="json or xml")]
Jurisdiction = Annotated[str | None, Query(max_length=128)]
StaffKey = Annotated[
    str | None,
    Query(
        max_length=256,
        description="beyond the spec: with a valid key the exact place and the reporter's contact; without, "
        "masked text and a coarse place",
    ),
]


class Open311Error(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


@dataclass(frozen=True)
class Service:
    """A service the backend takes requests for (GeoReport v2 `services`)."""

    service_code: str
    service_name: str
    description: str = ""
    group: str = ""
    keywords: tuple[str, ...] = ()
    agency: str = ""


@dataclass
class BackendSettings:
    """Everything the backend runs on; the bot builds these from its own config (bot/app.py), `doorstep backend`
    likewise."""

    db_url: str
    api_keys: list[str]
    services: list[Service]
    jurisdiction_id: str = "doorstep.local"
    webhook_secret: str = ""  # signs the webhooks; empty: no webhooks
    subscribers: list[str] = field(default_factory=list)  # webhook URLs besides those registered by API
    max_media_bytes: int = MAX_MEDIA_BYTES
    webhook_interval_seconds: float = 1.0


def _sniff_image(data: bytes) -> str | None:
    for magic, mime in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _parse_dt(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C date-time such as 2026-11-23T10:00:00+08:00") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=utcnow().tzinfo)


def _coord(name: str, value: str | None, limit: float) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        v = float(value)
    except ValueError:
        raise Open311Error(400, f"{name} must be a number") from None
    if not math.isfinite(v) or abs(v) > limit:
        raise Open311Error(400, f"{name} must be between -{limit:g} and {limit:g}")
    return v


class Backend:
    """The backend's state: database, services, webhook sender. One per process (or per test)."""

    def __init__(
        self,
        settings: BackendSettings,
        *,
        now: Callable[[], datetime] = utcnow,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.now = now
        self.engine = make_engine(settings.db_url)
        ensure_schema(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.services = {s.service_code: s for s in settings.services}
        self.webhooks = WebhookSender(
            self.sessions, settings.webhook_secret, now, transport=webhook_transport
        )
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._webhook_loop(), name="open311-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.webhooks.aclose()
        self.engine.dispose()

    async def _webhook_loop(self) -> None:
        while True:
            try:
                await self.webhooks.deliver_due()
            except Exception:
                log.exception("webhook delivery round failed")
            await asyncio.sleep(self.settings.webhook_interval_seconds)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as c:
                c.exec_driver_sql("SELECT 1")
            return True
        except Exception:
            return False

    # --- checks -------------------------------------------------------------------------------------

    def valid_key(self, api_key: str | None) -> bool:
        given = (api_key or "").encode()
        return bool(given) and any(
            hmac.compare_digest(given, k.encode()) for k in self.settings.api_keys if k
        )

    def check_key(self, api_key: str | None) -> None:
        if not self.valid_key(api_key):
            raise Open311Error(403, "api_key was not provided or is invalid")

    def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        if jurisdiction_id and jurisdiction_id != self.settings.jurisdiction_id:
            raise Open311Error(404, f"jurisdiction_id {jurisdiction_id!r} not found")

    def service(self, code: str | None) -> Service:
        if not code:
            raise Open311Error(400, "service_code was not provided")
        svc = self.services.get(code)
        if svc is None:
            raise Open311Error(404, f"service_code {code!r} not found")
        return svc

    # --- documents ----------------------------------------------------------------------------------

    @staticmethod
    def service_doc(s: Service) -> dict[str, Any]:
        return {
            "service_code": s.service_code,
            "service_name": s.service_name,
            "description": s.description,
            "metadata": True,
            "type": "realtime",
            "keywords": ",".join(s.keywords),
            "group": s.group,
        }

    @staticmethod
    def definition_doc(s: Service) -> dict[str, Any]:
        """Every service takes the same optional attributes: the grid and community responsible, urgency."""
        return {
            "service_code": s.service_code,
            "attributes": [
                {
                    "variable": True,
                    "code": "community",
                    "datatype": "string",
                    "required": False,
                    "datatype_description": "社区名称",
                    "order": 1,
                    "description": "所属社区",
                },
                {
                    "variable": True,
                    "code": "grid",
                    "datatype": "string",
                    "required": False,
                    "datatype_description": "网格名称",
                    "order": 2,
                    "description": "负责网格",
                },
                {
                    "variable": True,
                    "code": "urgency",
                    "datatype": "singlevaluelist",
                    "required": False,
                    "datatype_description": "",
                    "order": 3,
                    "description": "紧急程度",
                    "values": [{"key": "normal", "name": "一般"}, {"key": "urgent", "name": "紧急"}],
                },
                {
                    "variable": True,
                    "code": "reporters",
                    "datatype": "number",
                    "required": False,
                    "datatype_description": "反映人数",
                    "order": 4,
                    "description": "反映人数",
                },
            ],
        }

    @staticmethod
    def request_doc(r: ServiceRequest) -> dict[str, Any]:
        return {
            "service_request_id": str(r.id),
            "status": r.status,
            "status_notes": r.status_notes or None,
            "service_name": r.service_name,
            "service_code": r.service_code,
            "description": r.description,
            "agency_responsible": r.agency_responsible or None,
            "service_notice": r.service_notice or None,
            "requested_datetime": w3c(r.requested_datetime),
            "updated_datetime": w3c(r.updated_datetime, precise=True),
            "expected_datetime": w3c(r.expected_datetime),
            "address": r.address or None,
            "address_id": r.address_id or None,
            "zipcode": r.zipcode or None,
            "lat": r.lat,
            "long": r.long,
            "media_url": r.media_url or None,
        }

    @classmethod
    def public_doc(cls, r: ServiceRequest) -> dict[str, Any]:
        """What anyone may read (the GET routes answer without a key): the text with phone and ID numbers
        masked, the place at the community and building level (in the description too), coordinates to about
        100 m."""
        community = str((r.attributes or {}).get("community", ""))
        description = mask_pii(r.description)
        exact = r.address.removeprefix(community).strip()
        if len(exact) >= 2:  # the resident's words name the place too ("刘阿姨家门口井盖没了")
            description = description.replace(exact, coarse_place(exact))
        return {
            **cls.request_doc(r),
            "status_notes": mask_pii(r.status_notes) or None,
            "description": description,
            "address": coarse_place(r.address, community) or community or None,
            "address_id": None,
            "lat": coarse_coordinate(r.lat),
            "long": coarse_coordinate(r.long),
        }

    @classmethod
    def staff_doc(cls, r: ServiceRequest) -> dict[str, Any]:
        """With a valid api_key: the exact place and the contact the reporter gave (beyond the spec)."""
        contact = {"first_name": r.first_name, "last_name": r.last_name, "email": r.email, "phone": r.phone}
        return {**cls.request_doc(r), **{k: v or None for k, v in contact.items()}}

    def doc_for(self, r: ServiceRequest, api_key: str | None) -> dict[str, Any]:
        return self.staff_doc(r) if self.valid_key(api_key) else self.public_doc(r)

    def event(self, r: ServiceRequest, kind: str) -> dict[str, Any]:
        return {"type": kind, "jurisdiction_id": self.settings.jurisdiction_id, **self.request_doc(r)}

    # --- operations (used by the routes and by tests) ---------------------------------------------------

    def subscribe(self, url: str) -> None:
        with self.sessions() as s, s.begin():
            if s.scalars(select(Subscriber).where(Subscriber.url == url)).first() is None:
                s.add(Subscriber(url=url))

    def update_status(
        self,
        request_id: int,
        status: str,
        notes: str = "",
        agency: str = "",
        expected: datetime | None = None,
    ) -> ServiceRequest:
        if status not in STATUSES:
            raise Open311Error(400, "status must be open or closed")
        now = self.now()
        with self.sessions() as s, s.begin():
            r = s.get(ServiceRequest, request_id)
            if r is None:
                raise Open311Error(404, f"service_request_id {request_id} not found")
            r.status = status
            r.status_notes = notes
            if agency:
                r.agency_responsible = agency
            if expected is not None:
                r.expected_datetime = expected
            r.updated_datetime = now
            s.add(
                StatusUpdate(
                    request_id=r.id,
                    status=status,
                    status_notes=notes,
                    agency_responsible=r.agency_responsible,
                    at=now,
                )
            )
            enqueue(s, self.event(r, "request.updated"), self.settings.subscribers, now)
            return r

    def get_request(self, request_id: str) -> ServiceRequest:
        if not _is_id(request_id):
            raise Open311Error(404, f"service_request_id {request_id!r} not found")
        with self.sessions() as s:
            r = s.get(ServiceRequest, int(request_id))
        if r is None:
            raise Open311Error(404, f"service_request_id {request_id!r} not found")
        return r


def _fmt_of(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


def create_backend_app(
    backend: Backend | BackendSettings, *, manage_lifecycle: bool = True, prefix: str = GEOREPORT_PATH
) -> FastAPI:
    """The GeoReport v2 API under `prefix` (`/open311/v2`, as the contract says); `serve` mounts the app at
    /open311/v2 itself and passes `prefix=""`."""
    be = backend if isinstance(backend, Backend) else Backend(backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await be.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await be.stop()

    app = FastAPI(
        title="Doorstep Open311 GeoReport v2",
        version="2.0",
        lifespan=lifespan,
        description="The built-in ticket backend: Open311 GeoReport v2, JSON and XML.",
    )
    app.state.backend = be
    app.add_middleware(Utf8FormMiddleware)  # staff notes in raw UTF-8 form data (curl -d) read right

    @app.exception_handler(Open311Error)
    async def _open311_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Open311Error)
        return error_response(_fmt_of(request), exc.status, exc.description)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error_response(_fmt_of(request), 400, problems or ["invalid request"])

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(_fmt_of(request), exc.status_code, str(exc.detail))

    api = APIRouter()

    @api.get("/services.{fmt}", tags=["services"], summary="GET Service List")
    async def services(fmt: Fmt, jurisdiction_id: Jurisdiction = None) -> Response:
        be.check_jurisdiction(jurisdiction_id)
        return render(fmt, "services", [be.service_doc(s) for s in be.services.values()])

    @api.get("/services/{service_code}.{fmt}", tags=["services"], summary="GET Service Definition")
    async def service_definition(
        service_code: Annotated[str, Path(max_length=64)], fmt: Fmt, jurisdiction_id: Jurisdiction = None
    ) -> Response:
        be.check_jurisdiction(jurisdiction_id)
        return render(fmt, "service_definition", be.definition_doc(be.service(service_code)))

    @api.post("/requests.{fmt}", tags=["requests"], summary="POST Service Request")
    async def create_request(
        request: Request,
        fmt: Fmt,
        api_key: Annotated[str | None, Form(max_length=256)] = None,
        jurisdiction_id: Annotated[str | None, Form(max_length=128)] = None,
        service_code: Annotated[str | None, Form(max_length=64)] = None,
        lat: Annotated[str | None, Form(max_length=32)] = None,
        long: Annotated[str | None, Form(max_length=32)] = None,
        address_string: Annotated[str | None, Form(max_length=1000)] = None,
        address_id: Annotated[str | None, Form(max_length=128)] = None,
        email: Annotated[str | None, Form(max_length=256)] = None,
        device_id: Annotated[str | None, Form(max_length=256)] = None,
        account_id: Annotated[str | None, Form(max_length=256)] = None,
        first_name: Annotated[str | None, Form(max_length=128)] = None,
        last_name: Annotated[str | None, Form(max_length=128)] = None,
        phone: Annotated[str | None, Form(max_length=64)] = None,
        description: Annotated[str | None, Form()] = None,
        media_url: Annotated[str | None, Form(max_length=2000)] = None,
        media: Annotated[
            UploadFile | None, File(description="a photo (beyond the spec): stored, served as media_url")
        ] = None,
        idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
    ) -> Response:
        be.check_key(api_key)
        be.check_jurisdiction(jurisdiction_id)
        svc = be.service(service_code)
        la, lo = _coord("lat", lat, 90), _coord("long", long, 180)
        if (la is None) != (lo is None):
            raise Open311Error(400, "lat and long must be given together")
        if la is None and not (address_string or "").strip() and not (address_id or "").strip():
            raise Open311Error(400, "lat/long, address_string, or address_id was not provided")
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise Open311Error(400, f"description is longer than {MAX_DESCRIPTION} characters")
        if media_url and not media_url.startswith(("http://", "https://")):
            raise Open311Error(400, "media_url must be an http or https URL")
        photo: tuple[bytes, str] | None = None
        if media is not None and (media.filename or media.size):
            data = await media.read(be.settings.max_media_bytes + 1)
            if len(data) > be.settings.max_media_bytes:
                raise Open311Error(
                    413, f"media is larger than {be.settings.max_media_bytes // (1024 * 1024)} MB"
                )
            mime = _sniff_image(data)
            if mime is None:
                raise Open311Error(400, "media must be a JPEG, PNG, GIF or WebP image")
            photo = (data, mime)
        form = await request.form()
        attributes = {
            k[len("attribute[") : -1]: str(v)[:500]
            for k, v in form.multi_items()
            if k.startswith("attribute[") and k.endswith("]") and isinstance(v, str)
        }
        key = (idempotency_key or "").strip() or None
        if key:
            existing = _by_key(be.sessions, key)
            if existing is not None:
                return render(fmt, "requests", [_created_doc(existing)])
        now = be.now()
        try:
            with be.sessions() as s, s.begin():
                r = ServiceRequest(
                    token=uuid.uuid4().hex,
                    idempotency_key=key,
                    jurisdiction_id=be.settings.jurisdiction_id,
                    service_code=svc.service_code,
                    service_name=svc.service_name,
                    description=description or "",
                    status="open",
                    agency_responsible=svc.agency,
                    lat=la,
                    long=lo,
                    address=(address_string or "").strip(),
                    address_id=(address_id or "").strip(),
                    media_url=media_url or "",
                    email=email or "",
                    device_id=device_id or "",
                    account_id=account_id or "",
                    first_name=first_name or "",
                    last_name=last_name or "",
                    phone=phone or "",
                    attributes=attributes,
                    requested_datetime=now,
                    updated_datetime=now,
                )
                s.add(r)
                s.flush()
                if photo is not None:
                    m = Media(request_id=r.id, mime=photo[1], data=photo[0], created_at=now)
                    s.add(m)
                    s.flush()
                    r.media_url = str(request.url_for("media", media_id=str(m.id)))
                enqueue(s, be.event(r, "request.created"), be.settings.subscribers, now)
        except IntegrityError:  # the same idempotency key raced in: answer with the first one
            existing = _by_key(be.sessions, key or "")
            if existing is None:
                raise
            r = existing
        return render(fmt, "requests", [_created_doc(r)])

    @api.get("/requests.{fmt}", tags=["requests"], summary="GET Service Requests")
    async def list_requests(
        fmt: Fmt,
        jurisdiction_id: Jurisdiction = None,
        service_request_id: Annotated[str | None, Query(max_length=4000)] = None,
        service_code: Annotated[str | None, Query(max_length=1000)] = None,
        start_date: Annotated[str | None, Query(max_length=40)] = None,
        end_date: Annotated[str | None, Query(max_length=40)] = None,
        status: Annotated[str | None, Query(max_length=40)] = None,
        api_key: StaffKey = None,
    ) -> Response:
        be.check_jurisdiction(jurisdiction_id)
        q = select(ServiceRequest)
        if service_request_id:  # ids given: the other parameters are ignored (the spec)
            ids = [int(i) for i in service_request_id.split(",") if _is_id(i.strip())]
            q = q.where(ServiceRequest.id.in_(ids)).order_by(ServiceRequest.id)
        else:
            start, end = _parse_dt("start_date", start_date), _parse_dt("end_date", end_date)
            if start is None and end is None:
                start = be.now() - DEFAULT_WINDOW
            if start is not None:
                q = q.where(ServiceRequest.requested_datetime >= start)
            if end is not None:
                q = q.where(ServiceRequest.requested_datetime <= end)
            if service_code:
                q = q.where(ServiceRequest.service_code.in_([c.strip() for c in service_code.split(",")]))
            if status:
                wanted = [x.strip() for x in status.split(",") if x.strip()]
                if any(w not in STATUSES for w in wanted):
                    raise Open311Error(400, "status must be open, closed, or both separated by a comma")
                q = q.where(ServiceRequest.status.in_(wanted))
            q = q.order_by(ServiceRequest.requested_datetime.desc())
        with be.sessions() as s:
            rows = s.scalars(q.limit(MAX_RESULTS)).all()
        return render(fmt, "requests", [be.doc_for(r, api_key) for r in rows])

    @api.get("/requests/{service_request_id}.{fmt}", tags=["requests"], summary="GET Service Request")
    async def get_request(
        service_request_id: Annotated[str, Path(max_length=64)],
        fmt: Fmt,
        jurisdiction_id: Jurisdiction = None,
        api_key: StaffKey = None,
    ) -> Response:
        be.check_jurisdiction(jurisdiction_id)
        return render(fmt, "requests", [be.doc_for(be.get_request(service_request_id), api_key)])

    @api.get("/tokens/{token}.{fmt}", tags=["requests"], summary="GET service_request_id from a token")
    async def token(
        token: Annotated[str, Path(max_length=64)], fmt: Fmt, jurisdiction_id: Jurisdiction = None
    ) -> Response:
        be.check_jurisdiction(jurisdiction_id)
        with be.sessions() as s:
            r = s.scalars(select(ServiceRequest).where(ServiceRequest.token == token)).first()
        if r is None:
            raise Open311Error(404, f"token {token!r} not found")
        return render(fmt, "requests", [{"service_request_id": str(r.id), "token": r.token}])

    @api.post(
        "/requests/{service_request_id}/status.{fmt}",
        tags=["staff"],
        summary="Update a request's status with a note and the agency (beyond the spec)",
    )
    async def update_status(
        service_request_id: Annotated[str, Path(max_length=64)],
        fmt: Fmt,
        api_key: Annotated[str | None, Form(max_length=256)] = None,
        status: Annotated[str | None, Form(max_length=16)] = None,
        status_notes: Annotated[str | None, Form(max_length=4000)] = None,
        agency_responsible: Annotated[str | None, Form(max_length=128)] = None,
        expected_datetime: Annotated[str | None, Form(max_length=40)] = None,
        jurisdiction_id: Annotated[str | None, Form(max_length=128)] = None,
    ) -> Response:
        be.check_key(api_key)
        be.check_jurisdiction(jurisdiction_id)
        r = be.get_request(service_request_id)
        if status is None:
            raise Open311Error(400, "status was not provided")
        r = be.update_status(
            r.id,
            status,
            status_notes or "",
            agency_responsible or "",
            _parse_dt("expected_datetime", expected_datetime),
        )
        return render(fmt, "requests", [be.request_doc(r)])

    @api.post(
        "/subscriptions.{fmt}", tags=["staff"], summary="Subscribe a URL to signed webhooks (beyond the spec)"
    )
    async def subscribe(
        fmt: Fmt,
        api_key: Annotated[str | None, Form(max_length=256)] = None,
        url: Annotated[str | None, Form(max_length=500)] = None,
    ) -> Response:
        be.check_key(api_key)
        if not url or not url.startswith(("http://", "https://")):
            raise Open311Error(400, "url must be an http or https URL")
        be.subscribe(url)
        return render(fmt, "subscriptions", [{"url": url, "subscribed": True}])

    @api.get(
        "/media/{media_id}",
        name="media",
        tags=["media"],
        summary="A photo sent with a request",
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    async def media(media_id: Annotated[str, Path(max_length=18)]) -> Response:
        if not _is_id(media_id):
            raise Open311Error(404, "media not found")
        with be.sessions() as s:
            m = s.get(Media, int(media_id))
        if m is None:
            raise Open311Error(404, "media not found")
        return Response(m.data, media_type=m.mime, headers={"Cache-Control": "public, max-age=86400"})

    app.include_router(api, prefix=prefix)
    return app


def _is_id(text: str) -> bool:
    """A row id as a client may name it: ASCII digits only (str.isdigit() also takes "²" and "٣", which int()
    refuses), at most 18 of them (a 64-bit integer)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def _by_key(sessions: sessionmaker[Session], key: str) -> ServiceRequest | None:
    with sessions() as s:
        return s.scalars(select(ServiceRequest).where(ServiceRequest.idempotency_key == key)).first()


def _created_doc(r: ServiceRequest) -> dict[str, Any]:
    return {
        "service_request_id": str(r.id),
        "token": r.token,
        "service_notice": r.service_notice or None,
        "account_id": r.account_id or None,
    }
