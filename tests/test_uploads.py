"""Every path a request names stays inside the data directory (issue 10, item 8): the knowledge upload's
community and file name, the removal by name, the backend's photos, the simulator's groups. A refused or
failed upload leaves nothing on disk and stores nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.web.app import create_web_app
from channels.simulator.channel import SimulatorChannel
from knowledge.service import KnowledgeService, open_knowledge
from tests.knowledge_support import HashEncoder

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = "# 停车管理办法\n\n## 第一条\n\n小区内车辆应当停放在划定的车位内，不得占用消防通道。\n"


@pytest.fixture
def app(config: Config, clock: ManualClock) -> Iterator[App]:
    config.main.http.admin_token = TOKEN
    kb = open_knowledge(config, ingest_sample_if_empty=False, encoder=HashEncoder())
    sim = SimulatorChannel.from_config(config)
    a = App(config, clock=clock, channels={"simulator": sim}, knowledge=kb)
    yield a
    asyncio.run(a.stop())
    kb.close()


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    web: FastAPI = create_web_app(app, manage_lifecycle=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://doorstep") as c:
        yield c


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def knowledge(app: App) -> KnowledgeService:
    kb = app.knowledge.service
    assert isinstance(kb, KnowledgeService)
    return kb


async def upload(
    client: httpx.AsyncClient, name: str, data: bytes, community: str | None = None
) -> httpx.Response:
    return await client.post(
        "/admin/knowledge/documents",
        headers=AUTH,
        data={"community": community} if community is not None else {},
        files={"file": (name, data, "application/octet-stream")},
    )


@pytest.mark.parametrize(
    "community",
    ["../../../../outside", "../outside", "{absolute}", "示例社区/../../outside", "..", "不存在社区"],
)
async def test_an_unknown_community_is_refused_before_anything_is_written(
    client: httpx.AsyncClient, app: App, data_dir: Path, community: str
) -> None:
    absolute = (
        Path(tempfile.gettempdir()) / f"doorstep-outside-{uuid.uuid4().hex[:8]}"
    )  # short: the form takes 64
    community = community.replace("{absolute}", str(absolute))
    before = files_under(data_dir.parent)
    try:
        r = await upload(client, "停车管理办法.md", DOC.encode(), community)
    finally:
        written = absolute.exists()
        shutil.rmtree(absolute, ignore_errors=True)
    assert not written
    assert r.status_code == 422, r.text
    if len(community) <= 64:  # a longer one is refused by the form's length limit already
        assert "没有这个社区" in r.json()["detail"] and "示例社区" in r.json()["detail"]
    assert files_under(data_dir.parent) == before  # not a byte written, inside the data directory or out
    assert knowledge(app).stats()["documents"] == 0  # and the bad value is not stored as a community


@pytest.mark.parametrize(
    "name", ["../../../../outside.md", "..\\..\\outside.md", "/etc/outside.md", "a/b/../outside.md"]
)
async def test_a_file_name_is_cut_to_its_last_part(
    client: httpx.AsyncClient, app: App, data_dir: Path, name: str
) -> None:
    r = await upload(client, name, DOC.encode(), "示例社区")
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "outside.md" and r.json()["community"] == "示例社区"
    assert files_under(data_dir / "uploads") == [data_dir / "uploads" / "示例社区" / "outside.md"]
    (doc,) = knowledge(app).index.meta.docs()
    assert doc.path == str((data_dir / "uploads" / "示例社区" / "outside.md").resolve())


async def test_names_that_are_no_names_are_refused(client: httpx.AsyncClient, data_dir: Path) -> None:
    for name, status in [(".bashrc", 400), ("..", 400), ("说明.exe", 400), ("\x00\x01", 400)]:
        r = await upload(client, name, DOC.encode())
        assert r.status_code == status, (name, r.text)
        assert r.json()["detail"]
    long = "很长的名字" * 40 + ".md"  # 600 bytes of UTF-8: over what a file system allows
    r = await upload(client, long, DOC.encode())
    assert r.status_code == 201, r.text
    assert r.json()["source"].endswith(".md") and len(r.json()["source"].encode()) <= 200
    assert [p.name for p in files_under(data_dir / "uploads")] == [r.json()["source"]]


async def test_a_failed_upload_leaves_nothing_behind_and_keeps_the_good_copy(
    client: httpx.AsyncClient, app: App, data_dir: Path
) -> None:
    r = await upload(client, "坏文件.pdf", b"%PDF-1.4 not really a pdf")
    assert r.status_code == 400 and "导入失败" in r.json()["detail"] and "PDF" in r.json()["reason"]
    assert files_under(data_dir / "uploads") == []
    r = await upload(client, "过大.md", b"#" * (20 * 1024 * 1024 + 1))
    assert r.status_code == 413 and files_under(data_dir / "uploads") == []

    assert (await upload(client, "停车管理办法.md", DOC.encode())).status_code == 201
    kept = data_dir / "uploads" / "_all" / "停车管理办法.md"
    assert files_under(data_dir / "uploads") == [kept]
    r = await upload(client, "停车管理办法.md", b"\xff\xfe\x00garbage\x00" * 10)  # the same name, unreadable
    assert r.status_code == 400
    assert files_under(data_dir / "uploads") == [kept] and kept.read_text(encoding="utf-8") == DOC
    hits = knowledge(app).retrieve("消防通道")
    assert hits and hits[0].chunk.source == "停车管理办法.md"


async def test_removal_by_name_stays_inside_and_deletes_the_kept_copy(
    client: httpx.AsyncClient, app: App, data_dir: Path
) -> None:
    outside = data_dir.parent / "outside.md"
    outside.write_text("not ours", encoding="utf-8")
    assert (await upload(client, "停车管理办法.md", DOC.encode(), "示例社区")).status_code == 201
    for source in ["..%2F..%2Foutside.md", "../outside.md", "%2E%2E%2Foutside.md"]:
        r = await client.delete(f"/admin/knowledge/documents/{source}", headers=AUTH)
        assert r.status_code == 404, (source, r.text)
    assert outside.read_text(encoding="utf-8") == "not ours"
    r = await client.delete(
        "/admin/knowledge/documents/停车管理办法.md", params={"community": "焕玉里社区"}, headers=AUTH
    )
    assert r.status_code == 404  # another community's document of that name: there is none
    r = await client.delete(
        "/admin/knowledge/documents/停车管理办法.md", params={"community": "示例社区"}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["removed"] == ["示例社区/停车管理办法.md"]
    assert files_under(data_dir / "uploads") == [] and outside.exists()


async def test_photo_and_simulator_paths_cannot_name_files(client: httpx.AsyncClient) -> None:
    for path in [
        "/open311/v2/media/..%2F..%2Fdoorstep.db",
        "/open311/v2/media/../../doorstep.db",
        "/open311/v2/media/1%2F..%2F..",
        "/open311/v2/media/-1",
        "/sim/groups/..%2F..%2Fdoorstep.db/messages",
        "/sim/groups/..%2Fsimulator.html/messages",
    ]:
        r = await client.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert b"SQLite" not in r.content and b"<html" not in r.content.lower()


async def test_a_catalog_naming_an_unknown_community_itself_is_refused(
    client: httpx.AsyncClient, app: App, data_dir: Path
) -> None:
    for community in ["../../outside", "外星社区"]:
        catalog = json.dumps({"community": community, "services": [{"name": "助老食堂", "地点": "12号楼"}]})
        r = await upload(client, "目录.json", catalog.encode())
        assert r.status_code == 422, r.text
        assert "没有这个社区" in r.json()["detail"]
    assert files_under(data_dir / "uploads") == [] and not (data_dir.parent / "outside").exists()
    assert knowledge(app).stats()["documents"] == 0
    catalog = json.dumps({"community": "焕玉里社区", "services": [{"name": "助老食堂", "地点": "12号楼"}]})
    r = await upload(client, "目录.json", catalog.encode())
    assert r.status_code == 201 and r.json()["community"] == "焕玉里社区"
    assert files_under(data_dir / "uploads") == [data_dir / "uploads" / "焕玉里社区" / "目录.json"]
