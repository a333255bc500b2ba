"""The admin API: token authentication on every endpoint, the notice and group flows, metrics, and a
schemathesis fuzz of its OpenAPI document with no server errors."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config, load_config
from bot.web.app import create_web_app
from knowledge.gaps import record_gap
from knowledge.service import KnowledgeService, open_knowledge
from store.models import Ticket, TicketReport
from tests.support import RecordingChannel

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-admin-token"  # configured by the environment (nothing ships in config/doorstep.yaml)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_HTTP__ADMIN_TOKEN", TOKEN)


def make_web(app: App) -> FastAPI:
    web = create_web_app(app, manage_lifecycle=False)
    return web


class HashEncoder:
    """A stand-in embedding model: fast, deterministic, good enough to exercise the knowledge endpoints."""

    name = "test-hash"
    dim = 64

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
            out[i] /= max(1e-6, float(np.linalg.norm(out[i])))
        return out

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def knowledge_for(config: Config) -> KnowledgeService:
    return open_knowledge(config, ingest_sample_if_empty=False, encoder=HashEncoder())


@pytest.fixture
def sync_app(config: Config, clock: ManualClock) -> Iterator[App]:
    app = App(config, clock=clock, channels={"rec": RecordingChannel()}, knowledge=knowledge_for(config))
    app.knowledge.service.store = app.store  # type: ignore[union-attr]
    seed_tickets(app)
    yield app
    asyncio.run(app.stop())
    app.knowledge.service.close()  # type: ignore[union-attr]


def seed_tickets(app: App) -> None:
    now = app.clock.now()
    with app.store.session() as s:
        t = Ticket(
            service_code="municipal_facility",
            service_name="市政设施",
            title="井盖松动",
            place="3号楼门口",
            community="示例社区",
            grid="网格3",
            status="open",
            sync="sent",
            remote_id="42",
            created_at=now,
            updated_at=now,
        )
        s.add(t)
        s.flush()
        for i, (sender, state) in enumerate([("u_a", "filed"), ("r_chen", "merged"), ("u_b", "merged")]):
            s.add(
                TicketReport(
                    ticket_id=t.id,
                    channel="rec",
                    message_id=f"m{i}",
                    group_id="幸福里3号楼",
                    sender=sender,
                    sender_name=sender,
                    text="3号楼门口井盖松了",
                    place="3号楼门口",
                    state=state,
                    created_at=now,
                )
            )
        s.add(
            TicketReport(
                ticket_id=None,
                channel="rec",
                message_id="m9",
                group_id="幸福里5号楼",
                sender="u_c",
                text="楼道灯不亮",
                state="draft",
                created_at=now,
            )
        )
    for i, q in enumerate(
        ["电动车能在楼道充电吗", "电动车可以在楼道里充电吗？", "电动车能不能楼道充电", "游泳馆几点开门"]
    ):
        record_gap(app.store, group="幸福里3号楼", question=q, sender=f"u_{i}", community="示例社区", now=now)


@pytest.fixture
def web(sync_app: App) -> FastAPI:
    svc = sync_app.services.notices
    svc.create(svc.draft(["网格3"], "明天9点到12点停水，请提前储水"), created_by="admin-api", source="api")
    svc.create(
        svc.draft(["全部"], "周六上午义诊", schedule="明天8:00", ask_ack=True),
        created_by="admin-api",
        source="api",
    )
    return make_web(sync_app)


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    web = make_web(app)
    await app.tick()  # the app's loop is known: the API starts deliveries at once
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://admin") as c:
        yield c


def admin_operations(web: FastAPI) -> list[tuple[str, str]]:
    ops: list[tuple[str, str]] = []
    for path, item in web.openapi()["paths"].items():
        if path.startswith("/admin"):
            ops.extend(
                (method.upper(), path)
                for method in item
                if method in ("get", "post", "put", "patch", "delete")
            )
    return ops


# --- authentication ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}-and-more"},
    ],
    ids=["missing", "wrong", "basic", "bare", "empty", "longer"],
)
async def test_every_admin_endpoint_refuses_a_missing_or_wrong_token(
    web: FastAPI, headers: dict[str, str]
) -> None:
    ops = admin_operations(web)
    assert len(ops) >= 12
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://admin") as c:
        for method, path in ops:
            url = re.sub(r"\{notice_id\}", "1", re.sub(r"\{group_id\}", "幸福里3号楼", path))
            body = {"targets": ["网格3"], "text": "x", "community": "示例社区"} if method == "POST" else None
            r = await c.request(method, url, headers=headers, json=body)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers.get("www-authenticate") == "Bearer"
        r = await c.get("/admin/notices/1", headers=AUTH)
        assert r.status_code == 200


def test_openapi_documents_the_bearer_token_on_every_admin_operation(web: FastAPI) -> None:
    doc = web.openapi()
    assert doc["components"]["securitySchemes"]["AdminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "http.admin_token in config/doorstep.yaml or $DOORSTEP_HTTP__ADMIN_TOKEN; empty there: the "
        "admin_token generated in the data directory's secrets.json",
    }
    for path, item in doc["paths"].items():
        if path.startswith("/admin"):
            for op in item.values():
                assert op["security"] == [{"AdminToken": []}], path
                assert "401" in op["responses"]


async def test_token_comes_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    monkeypatch.setenv("DOORSTEP_HTTP__ADMIN_TOKEN", "from-env-令牌".encode().hex())
    cfg = load_config(ROOT / "config" / "doorstep.yaml")
    app = App(cfg, clock=clock, channels={"rec": RecordingChannel()})
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_web(app)), base_url="http://a"
        ) as c:
            assert (await c.get("/admin/staff", headers=AUTH)).status_code == 401
            ok = await c.get(
                "/admin/staff", headers={"Authorization": f"Bearer {'from-env-令牌'.encode().hex()}"}
            )
            assert ok.status_code == 200
    finally:
        await app.stop()


async def test_an_empty_configured_token_means_the_generated_one(
    config: Config, clock: ManualClock, data_dir: Path
) -> None:
    config.main.http.admin_token = ""
    app = App(config, clock=clock, channels={"rec": RecordingChannel()})
    try:
        generated = json.loads((data_dir / "secrets.json").read_text())["admin_token"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_web(app)), base_url="http://a"
        ) as c:
            for refused in ("", TOKEN, "doorstep-admin"):  # nothing, the other one, the once-shipped one
                r = await c.get("/admin/health", headers={"Authorization": f"Bearer {refused}"})
                assert r.status_code == 401
            r = await c.get("/admin/health", headers={"Authorization": f"Bearer {generated}"})
            assert r.status_code == 200
    finally:
        await app.stop()


# --- notices and groups through the API ----------------------------------------------------------------------


async def test_notice_preview_create_report_through_the_api(
    client: httpx.AsyncClient, app: App, channel: RecordingChannel
) -> None:
    body = {
        "targets": ["网格3"],
        "text": "明天9点到12点停水，请提前储水",
        "ask_ack": True,
        "staff_id": "s_wang",
    }
    r = await client.post("/admin/notices/preview", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["group_count"] == 2 and {g["id"] for g in p["groups"]} == {"幸福里3号楼", "幸福里5号楼"}
    assert p["rendered"] == "【社区通知】明天9点到12点停水，请提前储水（收到请回复1）\n——王网格员"
    assert not channel.sent  # a preview stores and sends nothing
    assert (await client.get("/admin/notices", headers=AUTH)).json() == []

    r = await client.post("/admin/notices", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    nid = r.json()["id"]
    await asyncio.sleep(0)  # the API thread handed the delivery to the app's loop
    await app.services.notices.drain()
    await app.settle()
    assert sorted(s.group for s in channel.sent) == ["幸福里3号楼", "幸福里5号楼"]

    rep = (await client.get(f"/admin/notices/{nid}/deliveries", headers=AUTH)).json()
    assert rep["status"] == "done" and rep["counts"]["sent"] == 2 and rep["acks"] == 0
    assert {d["group_id"]: d["status"] for d in rep["deliveries"]} == {
        "幸福里3号楼": "sent",
        "幸福里5号楼": "sent",
    }
    assert all(d["sent_at"] for d in rep["deliveries"]) and "已送达2" in rep["summary"]
    assert (await client.post(f"/admin/notices/{nid}/cancel", headers=AUTH)).status_code == 409


async def test_scheduled_notice_cancel_and_errors(
    client: httpx.AsyncClient, app: App, clock: ManualClock, channel: RecordingChannel
) -> None:
    r = await client.post(
        "/admin/notices",
        headers=AUTH,
        json={"targets": ["示例社区"], "text": "周六上午义诊", "schedule": "明天8:00"},
    )
    assert (
        r.status_code == 201
        and r.json()["status"] == "scheduled"
        and r.json()["schedule"] == "11月24日 08:00"
    )
    nid = r.json()["id"]
    r = await client.post(f"/admin/notices/{nid}/cancel", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    clock.advance(86400)
    await app.tick()
    await app.services.notices.drain()
    assert not channel.sent

    bad = [
        ({"targets": ["网格9"], "text": "x"}, "没有找到发送对象"),
        ({"targets": ["网格3"], "text": "x", "schedule": "昨天"}, "看不懂"),
        ({"targets": ["网格1"], "text": "x", "staff_id": "s_wang"}, "不在您可以发通知的范围内"),
        ({"targets": ["网格3"], "text": "x", "staff_id": "nobody"}, "没有找到工作人员"),
    ]
    for body, reason in bad:
        r = await client.post("/admin/notices/preview", json=body, headers=AUTH)
        assert r.status_code == 400 and reason in r.json()["detail"], r.text
    assert (await client.get("/admin/notices/999", headers=AUTH)).status_code == 404
    assert (
        await client.post("/admin/notices/preview", json={"targets": [], "text": "x"}, headers=AUTH)
    ).status_code == 422


async def test_groups_staff_health_and_metrics(client: httpx.AsyncClient, app: App) -> None:
    groups = (await client.get("/admin/groups", headers=AUTH)).json()
    assert {g["id"] for g in groups} >= {"幸福里3号楼", "焕玉里2号院"} and all(g["bound"] for g in groups)
    r = await client.post(
        "/admin/groups/新建7号楼群/bind",
        headers=AUTH,
        json={"community": "焕玉里社区", "grid": "网格B", "tags": ["楼栋群"]},
    )
    assert r.status_code == 200 and r.json()["source"] == "binding" and r.json()["grid"] == "网格B"
    r = await client.post("/admin/groups/新建7号楼群/bind", headers=AUTH, json={"community": "不存在社区"})
    assert r.status_code == 400 and "没有找到" in r.json()["detail"]
    r = await client.delete("/admin/groups/新建7号楼群/bind", headers=AUTH)
    assert r.json()["bound"] is False
    assert (await client.get("/admin/groups", params={"bound": "false"}, headers=AUTH)).json()[0][
        "id"
    ] == "新建7号楼群"

    staff = (await client.get("/admin/staff", headers=AUTH)).json()
    assert {
        "id": "s_wang",
        "name": "王网格员",
        "roles": ["网格员"],
        "community": "示例社区",
        "grids": ["网格3"],
        "phone": "",
    } in staff

    h = (await client.get("/admin/health", headers=AUTH)).json()
    assert h["parts"]["store"]["status"] == "up" and "notices" in h["parts"]

    r = await client.get("/admin/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert 'doorstep_groups{bound="false"} 1.0' in r.text and "doorstep_store_up 1.0" in r.text
    assert 'doorstep_notice_deliveries{status="sent"}' in r.text


# --- knowledge and tickets -------------------------------------------------------------------------------------


async def test_knowledge_upload_list_remove_faq_and_gaps(web: FastAPI, tmp_path: Path) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://admin") as c:
        doc = "# 示例社区停车管理办法\n\n## 第一条\n\n小区内车辆应当停放在划定的车位内，不得占用消防通道。\n"
        r = await c.post(
            "/admin/knowledge/documents",
            headers=AUTH,
            data={"community": "示例社区"},
            files={"file": ("停车管理办法.md", doc.encode(), "text/markdown")},
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "added" and r.json()["chunks"] >= 1
        files = (await c.get("/admin/knowledge/documents", headers=AUTH)).json()
        assert [f["source"] for f in files] == ["停车管理办法.md"] and files[0]["community"] == "示例社区"
        assert (await c.get("/admin/knowledge", headers=AUTH)).json()["documents"] == 1
        r = await c.post(
            "/admin/knowledge/documents",
            headers=AUTH,
            files={"file": ("坏文件.pdf", b"not a pdf", "application/pdf")},
        )
        assert r.status_code == 400 and "导入失败" in r.json()["detail"]
        assert (await c.delete("/admin/knowledge/documents/停车管理办法.md", headers=AUTH)).status_code == 200
        assert (await c.delete("/admin/knowledge/documents/停车管理办法.md", headers=AUTH)).status_code == 404
        assert (await c.get("/admin/knowledge/documents", headers=AUTH)).json() == []

        faq = (await c.get("/admin/knowledge/faq", headers=AUTH)).json()
        assert faq and all(e["answer"] for e in faq)
        gaps = (await c.get("/admin/knowledge/gaps", headers=AUTH)).json()
        assert [g["count"] for g in gaps] == [3, 1]  # similar wordings together, most asked first
        assert gaps[0]["question"].startswith("电动车") and gaps[1]["question"] == "游泳馆几点开门"


async def test_tickets_seen_from_the_bot(web: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://admin") as c:
        ts = (await c.get("/admin/tickets", headers=AUTH)).json()
        assert (
            len(ts) == 1
            and ts[0]["title"] == "井盖松动"
            and ts[0]["reports"] == 3
            and ts[0]["reporters"] == 3
        )
        one = (await c.get(f"/admin/tickets/{ts[0]['id']}", headers=AUTH)).json()
        assert [r["state"] for r in one["report_list"]] == ["filed", "merged", "merged"]
        assert one["status"] == "open" and one["sync"] == "sent"
        drafts = (await c.get("/admin/tickets/reports", params={"state": "draft"}, headers=AUTH)).json()
        assert [d["text"] for d in drafts] == ["楼道灯不亮"]
        assert (await c.get("/admin/tickets/999", headers=AUTH)).status_code == 404
        assert (
            await c.get("/admin/knowledge/gaps", params={"status": "answered"}, headers=AUTH)
        ).json() == []


async def test_knowledge_endpoints_say_when_the_index_is_not_loaded(client: httpx.AsyncClient) -> None:
    r = await client.get("/admin/knowledge/documents", headers=AUTH)
    assert r.status_code == 503 and r.json()["detail"] == "知识库没有加载"


# --- fuzzing -------------------------------------------------------------------------------------------------


def test_admin_api_fuzz_has_no_server_errors(web: FastAPI) -> None:
    """Every admin operation, with schemathesis-generated requests (and a valid token): never a 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", web).include(path_regex="^/admin")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12
    for op in operations:

        @given(case=op.as_strategy(GenerationMode.POSITIVE) | op.as_strategy(GenerationMode.NEGATIVE))
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        fuzz()
