"""Bad input that used to break or hang (issue 10, item 11), each file generated here, small to store: an XLSX
with one merged range over half a million cells, a DOCX of a million empty paragraphs, a PNG header claiming
30000x30000, control characters in a report, a damaged SQLite store. Every parser is bounded by a documented
limit (knowledge/loaders.py) and measured here by the memory it allocates, not by the time it takes."""

from __future__ import annotations

import base64
import io
import logging
import struct
import threading
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree as ET

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from bot.app import App
from bot.cli import main
from bot.clock import ManualClock
from bot.config import Config
from bot.web.app import create_web_app
from channels.simulator.channel import SimulatorChannel
from knowledge import loaders
from knowledge.ingest import INTERRUPTED
from knowledge.loaders import LoadError, load
from knowledge.service import open_knowledge
from store import Store
from store.db import StoreError
from store.models import Ticket, TicketReport
from tests.knowledge_support import HashEncoder

T = TypeVar("T")
MB = 1024 * 1024


def peak_memory(work: Callable[[], T]) -> tuple[T, int]:
    """What `work` returns and the most memory it held at once (Python allocations, deterministic)."""
    tracemalloc.start()
    try:
        out = work()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- hostile files, generated ---------------------------------------------------------------------------------


def merged_xlsx(path: Path) -> Path:
    """A catalog and one merged range A3:AX10002 (50 x 10000 cells), ~31 KB as openpyxl writes it."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["服务名称", "地点", "开放时间"])
    ws.append(["助老食堂", "12号楼", "11:00-13:00"])
    ws["A3"] = "四点半课堂"
    ws.merge_cells("A3:AX10002")
    wb.save(path)
    return path


def sparse_xlsx(path: Path) -> Path:
    """Two real rows and one stray cell at CV20000: 2 million cells to read for almost nothing."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["服务名称", "地点"])
    ws.append(["助老食堂", "12号楼"])
    ws.cell(row=20000, column=100, value="x")
    wb.save(path)
    return path


def empty_paragraphs_docx(path: Path, n: int = 1_000_000) -> Path:
    """A real DOCX (python-docx) whose body is then given `n` empty paragraphs before its one real one."""
    import docx

    buf = io.BytesIO()
    d = docx.Document()
    d.add_paragraph("第一条 小区内禁止高空抛物。")
    d.save(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + b"<w:p/>" * n, 1)
            dst.writestr(item, data)
    path.write_bytes(out.getvalue())
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; the pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --- the knowledge loaders ----------------------------------------------------------------------------------------


@pytest.mark.timeout(120)  # the old loader held a CPU for 400+ s on this file
def test_a_huge_merged_range_is_filled_only_where_there_is_data(tmp_path: Path) -> None:
    path = merged_xlsx(tmp_path / "目录.xlsx")
    assert path.stat().st_size < 64 * 1024
    doc, peak = peak_memory(lambda: load(path))
    assert peak < 40 * MB, f"{peak / MB:.0f} MB"  # openpyxl's full model alone: 500k merged-cell objects
    assert [e["服务名称"] for e in doc.entries] == ["助老食堂", "四点半课堂"]
    assert doc.entries[1]["地点"] == "四点半课堂"  # the merged value fills the row, as before
    assert "A3:AX10002" in doc.warnings[0]


def test_a_sheet_past_the_cell_limit_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = sparse_xlsx(tmp_path / "稀疏.xlsx")
    with pytest.raises(LoadError, match=r"too large to ingest: more than 1,000,000 cells"):
        peak_memory(lambda: load(path))


def test_a_million_empty_paragraphs_are_refused_without_building_them(tmp_path: Path) -> None:
    path = empty_paragraphs_docx(tmp_path / "空段落.docx")
    assert path.stat().st_size < 256 * 1024

    def attempt() -> str:
        try:
            load(path)
        except LoadError as e:
            return str(e)
        return "loaded"

    reason, peak = peak_memory(attempt)
    assert reason == "too large to ingest: more than 50,000 paragraphs (the limit is 50,000); split the file"
    assert peak < 20 * MB, f"{peak / MB:.0f} MB"  # python-docx on it: 280 MB and 31 s
    small = empty_paragraphs_docx(tmp_path / "少量空段落.docx", n=1000)  # under the limit: read as before
    assert "高空抛物" in load(small).text


def test_limits_on_text_zip_size_and_markup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    long = tmp_path / "长文.txt"
    long.write_text("物业" * (loaders.MAX_CHARS // 2 + 1), encoding="utf-8")
    with pytest.raises(LoadError, match="characters of text"):
        load(long)
    monkeypatch.setattr(loaders, "MAX_UNZIPPED", 1024)
    with pytest.raises(LoadError, match="unpacks to"):
        load(merged_xlsx(tmp_path / "目录.xlsx"))
    monkeypatch.setattr(loaders, "MAX_MARKUP", 100)
    page = tmp_path / "页.html"
    page.write_text("<html><body>" + "<p>通知</p>" * 200 + "</body></html>", encoding="utf-8")
    with pytest.raises(LoadError, match="HTML tags"):
        load(page)
    catalog = tmp_path / "目录.json"
    catalog.write_text("[" + ",".join('{"name": "x"}' for _ in range(200)) + "]", encoding="utf-8")
    with pytest.raises(LoadError, match="JSON objects"):
        load(catalog)


def test_kb_ingest_names_each_refused_file_and_ingests_the_rest(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    empty_paragraphs_docx(docs / "空段落.docx")
    sparse_xlsx(docs / "稀疏.xlsx")
    merged_xlsx(docs / "目录.xlsx")
    (docs / "停车规定.md").write_text("# 停车规定\n\n第一条 消防通道禁止停车。\n", encoding="utf-8")
    index = tmp_path / "index"
    assert main(["kb", "ingest", str(docs), "--index", str(index)]) == 2
    out = capsys.readouterr().out.splitlines()
    failed = {line.split()[1]: line for line in out if line.startswith("FAILED")}
    assert set(failed) == {str(docs / "空段落.docx") + ":", str(docs / "稀疏.xlsx") + ":"}
    assert "paragraphs" in failed[str(docs / "空段落.docx") + ":"]
    assert "cells" in failed[str(docs / "稀疏.xlsx") + ":"]
    assert any(line.startswith("added") and "停车规定.md" in line for line in out)
    assert any(line.startswith("added") and "目录.xlsx" in line for line in out)
    assert "2 added" in out[-1] and "2 failed" in out[-1]


# --- ingestion is interruptible -----------------------------------------------------------------------------


class InterruptingEncoder(HashEncoder):
    """Embeds like HashEncoder; after its first batch of passages it calls `then` (a shutdown arriving)."""

    def __init__(self) -> None:
        super().__init__()
        self.then: Callable[[], None] = lambda: None
        self.batches = 0

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        self.batches += 1
        if self.batches == 1:
            self.then()
        return super().queries(texts)


def test_a_shutdown_stops_a_running_ingest_between_batches(config: Config, tmp_path: Path) -> None:
    encoder = InterruptingEncoder()
    kb = open_knowledge(config, index_dir=tmp_path / "index", ingest_sample_if_empty=False, encoder=encoder)
    try:
        docs = tmp_path / "docs"
        docs.mkdir()
        for i in range(3):  # ~120 articles each: many batches of 32 to embed
            text = "\n\n".join(
                f"第{n + 1}条 第{i}号规定的第{n}项内容，关于小区公共秩序。" for n in range(120)
            )
            (docs / f"规定{i}.txt").write_text(f"规定{i}\n\n{text}\n", encoding="utf-8")
        encoder.then = kb.interrupt
        done = threading.Event()
        report: list[Any] = []

        def run() -> None:
            report.append(kb.ingest([docs]))
            done.set()

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=60)  # a real thread: it ends at the next batch, not after all of them
        assert done.is_set()
        (r,) = report
        assert encoder.batches == 1
        assert {f.status for f in r.files} == {"failed"} and {f.reason for f in r.files} == {INTERRUPTED}
        assert kb.index.count() == 0 and kb.stats()["documents"] == 0  # nothing half written
    finally:
        kb.close()


async def test_the_web_app_interrupts_ingestion_when_it_shuts_down(
    config: Config, clock: ManualClock
) -> None:
    kb = open_knowledge(config, ingest_sample_if_empty=False, encoder=HashEncoder())
    app = App(config, clock=clock, channels={}, knowledge=kb)
    web = create_web_app(app, manage_lifecycle=False)
    try:
        async with web.router.lifespan_context(web):
            assert not kb.stopping.is_set()
        assert kb.stopping.is_set()
    finally:
        await app.stop()
        kb.close()


# --- the simulator's images -------------------------------------------------------------------------------


@pytest.fixture
async def sim_web(config: Config, clock: ManualClock) -> AsyncIterator[FastAPI]:
    app = App(config, clock=clock, channels={"simulator": SimulatorChannel.from_config(config)})
    await app.start(background=False)
    yield create_web_app(app, manage_lifecycle=False)
    await app.stop()


async def test_a_picture_claiming_30000_by_30000_pixels_is_refused_in_chinese(sim_web: FastAPI) -> None:
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim_web), base_url="http://sim") as c:
        for data in (bomb, png_claiming(10000, 10000)):  # past PIL's own bomb check, and past ours only
            r = await c.post(
                "/sim/messages",
                json={
                    "group": "幸福里3号楼",
                    "sender": "u_zhang",
                    "image_base64": base64.b64encode(data).decode(),
                },
            )
            assert r.status_code == 413, r.text
            assert r.json()["detail"]["message"].startswith("图片尺寸太大")
            assert "Traceback" not in r.text
        ok = io.BytesIO()
        from PIL import Image

        Image.new("RGB", (64, 48), "white").save(ok, "PNG")
        r = await c.post(
            "/sim/messages",
            json={
                "group": "幸福里3号楼",
                "sender": "u_zhang",
                "image_base64": base64.b64encode(ok.getvalue()).decode(),
            },
        )
        assert r.status_code == 202


# --- XML output -----------------------------------------------------------------------------------------------


async def test_control_characters_in_a_report_leave_the_xml_well_formed(
    config: Config, clock: ManualClock
) -> None:
    app = App(config, clock=clock, channels={})
    web = create_web_app(app, manage_lifecycle=False)
    key = config.api_keys[0]
    text = "3号楼门口\x01井盖\x08松了\x1b[0m\x0b，\ufffe快来\t看看\n"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://bot") as c:
            r = await c.post(
                "/open311/v2/requests.xml",
                data={
                    "api_key": key,
                    "service_code": "municipal_facility",
                    "address_string": "3号楼\x02门口",
                    "description": text,
                },
            )
            assert r.status_code == 200, r.text
            ET.fromstring(r.content)
            # with the key: the exact text and place (the public list shows coarse places only)
            r = await c.get("/open311/v2/requests.xml", params={"api_key": key})
            root = ET.fromstring(r.content)  # not well-formed before: the characters went out as they were
            (req,) = root.findall("request")
            assert req.findtext("description") == "3号楼门口井盖松了[0m，快来\t看看\n"
            assert req.findtext("address") == "3号楼门口"
            js = (await c.get("/open311/v2/requests.json", params={"api_key": key})).json()
            assert js[0]["description"] == text  # stored as sent; only the XML drops what XML cannot hold
    finally:
        await app.stop()


# --- a damaged store -----------------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "doorstep.db"
    bad.write_bytes(b"this is not an SQLite file, it was overwritten by something else" * 100)
    with pytest.raises(StoreError) as e:
        Store(f"sqlite:///{bad}").migrate()
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "damaged" in msg and "not a database" in msg


def damage_pages(db: Path, *names: str) -> None:
    """Overwrite the root b-tree page of each named table or index with garbage, as a torn write or a bad
    disk would: the file still opens and `SELECT 1` still works, what reads those pages fails."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        marks = ",".join("?" * len(names))
        roots = [
            r for (r,) in conn.execute(f"SELECT rootpage FROM sqlite_schema WHERE name IN ({marks})", names)
        ]
    conn.close()
    assert len(roots) == len(names)
    with db.open("r+b") as f:
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\xa5" * page_size)


async def test_a_damaged_page_shows_in_health_and_is_logged_once(
    config: Config, clock: ManualClock, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(config, clock=clock, channels={})
    now = clock.now()
    with app.store.session() as s:
        t = Ticket(
            service_code="municipal_facility",
            service_name="市政设施",
            title="井盖松动",
            place="3号楼门口",
            community="示例社区",
            status="open",
            sync="sent",
            created_at=now,
            updated_at=now,
        )
        s.add(t)
        s.flush()
        for i in range(20):
            s.add(
                TicketReport(
                    ticket_id=t.id,
                    channel="rec",
                    message_id=f"m{i}",
                    group_id="幸福里3号楼",
                    sender=f"u{i}",
                    text=f"3号楼门口井盖松了{i}",
                    place="3号楼门口",
                    state="filed",
                    created_at=now,
                )
            )
    app.store.close()
    with app.store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    app.store.close()
    # the tickets (what /admin/tickets reads) and the index the desk reads on every tick
    damage_pages(data_dir / "doorstep.db", "tickets", "ix_ticket_reports_state")
    web = create_web_app(app, manage_lifecycle=False)
    caplog.set_level(logging.INFO)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web, raise_app_exceptions=False), base_url="http://bot"
        ) as c:
            assert (await c.get("/health")).json()["status"] == "ok"  # nothing has read the page yet
            for _ in range(120):  # two minutes of the desk's one-second heartbeat
                await app.tick()
                clock.advance(1)
            h = (await c.get("/health")).json()
            assert h["status"] == "degraded" and h["parts"]["store"]["status"] == "down"
            r = await c.get("/admin/tickets", headers={"Authorization": f"Bearer {config.admin_token}"})
            assert r.status_code == 500  # the page is damaged; health says so now
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        desk = [r for r in errors if r.getMessage().startswith("ticket desk tick")]
        assert len(desk) == 2, [r.getMessage()[:80] for r in errors]  # the first, then once after a minute
        assert desk[0].exc_info is not None and "still failing (61 times" in desk[1].getMessage()
        assert sum("is damaged" in r.getMessage() for r in errors) == 1
    finally:
        await app.stop()
