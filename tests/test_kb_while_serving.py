"""`doorstep kb ingest` and `kb remove` while `doorstep serve` runs on the same data directory and index
(CONTRACT.md, "Knowledge while serving"; issue 10, item 7), on the real processes: the running bot answers
from the new files within seconds and never fails meanwhile. Also: a serve started while a `kb` run writes
waits for it; a second serve on the same index is refused; a reader in another process follows a writer; a
failed index read is answered in Chinese and recovered from; a shutdown never waits for an ingest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from bot.app import App
from bot.clock import ManualClock
from bot.config import Config
from bot.router import HANDLER_FAILED
from handlers.ask import UNAVAILABLE
from knowledge.handoff import Holder, ServerClient, WriterLock
from knowledge.service import open_knowledge
from tests.knowledge_support import HashEncoder
from tests.procs import ADMIN_TOKEN, ROOT, Procs, Serve, doorstep, wait_for
from tests.support import RecordingChannel, Say

GROUP = "幸福里3号楼"
SWIMMING = """# 社区游泳馆开放安排

## 开放时间

社区游泳馆每周二至周日开放，上午9点到晚上9点，周一闭馆清洁。

## 收费标准

游泳馆单次票价20元，60岁以上老年人凭老年证半价。
"""
FAILED = HANDLER_FAILED[:12]  # "抱歉，处理您的消息时出了点问题"


def library_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("社区图书室借阅办法", level=0)
    d.add_paragraph("办理借书证需要携带本人身份证和一张一寸照片，到社区服务中心二楼图书室登记，当场办好。")
    d.add_paragraph("图书室每人每次最多借三本书，借期三十天，可以续借一次。")
    d.save(str(path))
    return path


@pytest.fixture
def serve(procs: Procs, sample_index: Path) -> Serve:
    return procs.serve(index_seed=sample_index).start(180)


class Askers:
    """Residents asking about the sample in a loop, each question from a sender of its own, while something
    else happens: every question must get a real answer."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.stop = threading.Event()
        self.replies: list[str] = []
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        # questions the sample answers (the decision in use since issue 12 part 5 refuses "居委会是干什么的", one of
        # its counted errors: docs/knowledge.md), so any reply without a source is a failure of serving, not of judging
        questions = ["物业费怎么交", "业主大会怎么召开", "低保怎么申请", "助老食堂几点开饭"]
        n = 0
        try:
            while not self.stop.is_set():
                sender = f"u_during_{n}"
                self.replies.append(self.serve.ask(GROUP, sender, questions[n % len(questions)]))
                n += 1
        except BaseException as e:
            self.errors.append(e)

    def __enter__(self) -> Askers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


def test_kb_ingest_and_remove_while_serving_answer_at_once_and_never_fail(
    serve: Serve, tmp_path: Path
) -> None:
    docs = tmp_path / "新资料"
    docs.mkdir()
    (docs / "游泳馆.md").write_text(SWIMMING, encoding="utf-8")
    library_docx(docs / "图书室.docx")

    before = serve.ask(GROUP, "u_before_swim", "社区游泳馆几点开门")
    assert "游泳馆" not in before.split("来源")[-1]  # nothing about it yet

    with Askers(serve) as askers:
        wait_for("a first answer during the test", lambda: askers.replies, 60)
        r = doorstep("kb", "ingest", str(docs / "游泳馆.md"), str(docs / "图书室.docx"), env=serve.env)
        done_at = time.monotonic()
        assert r.returncode == 0, r.stdout + r.stderr
        swim = serve.ask(GROUP, "u_after_swim", "社区游泳馆几点开门", timeout=30)
        books = serve.ask(GROUP, "u_after_books", "借书证怎么办理", timeout=30)
        answered_within = time.monotonic() - done_at
        seen = len(askers.replies)
        wait_for("answers after the ingest too", lambda: len(askers.replies) > seen + 1, 60)
    assert not askers.errors, askers.errors
    assert "来源：《社区游泳馆开放安排》" in swim and "9点" in swim, swim
    assert "来源：《社区图书室借阅办法》" in books and "身份证" in books, books
    assert answered_within < 30
    assert "by doorstep serve" in r.stdout, r.stdout  # handed to the running server, which wrote them
    assert sum(line.startswith("added ") for line in r.stdout.splitlines()) == 2, r.stdout
    assert [a for a in askers.replies if "来源" not in a] == []  # every sample question answered meanwhile

    r = doorstep("kb", "remove", "游泳馆.md", "图书室.docx", env=serve.env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed    /游泳馆.md" in r.stdout and "removed    /图书室.docx" in r.stdout
    gone = serve.ask(GROUP, "u_gone_swim", "社区游泳馆几点开门", timeout=30)
    gone_books = serve.ask(GROUP, "u_gone_books", "借书证怎么办理", timeout=30)
    assert "游泳馆开放安排" not in gone and "图书室借阅办法" not in gone_books, (gone, gone_books)
    assert not any(FAILED in m["text"] for m in serve.messages(GROUP) if m["from_bot"])
    assert "Error finding id" not in serve.log()
    stats = doorstep("kb", "stats", "--json", env=serve.env)
    assert stats.returncode == 0 and '"documents": 10' in stats.stdout, stats.stdout


def test_serve_started_while_kb_writes_waits_for_it(procs: Procs, sample_index: Path) -> None:
    s = procs.serve(index_seed=sample_index)
    again = procs.serve("again", data=s.data)  # then a second serve on the same index
    lock = WriterLock(s.data / "index")
    assert lock.try_acquire(Holder(pid=os.getpid(), role="kb"))  # as `kb ingest` holds it
    try:
        s.start(wait=False)
        wait_for("serve to say it waits", lambda: "waiting for `doorstep kb`" in s.log(), 60)
        assert s.exited() is None
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{s.url}/health", timeout=2)  # it has not opened the index, nor started
        lock.release()
        s.wait_ready(180)
        again.start(wait=False)  # refused, one line
        assert again.proc is not None and again.proc.wait(timeout=120) == 2
        last = again.log().strip().splitlines()[-1]
        assert last.startswith("doorstep: error: the index in") and "in use by another doorstep serve" in last
        assert "Traceback" not in again.log()
    finally:
        lock.release()
        again.kill()
        s.stop()


def test_a_damaged_store_stops_serve_with_one_line(procs: Procs, sample_index: Path) -> None:
    s = procs.serve(index_seed=sample_index)
    s.data.mkdir(parents=True, exist_ok=True)
    (s.data / "doorstep.db").write_bytes(b"overwritten by something that was not SQLite" * 200)
    s.start(wait=False)
    try:
        assert s.proc is not None and s.proc.wait(timeout=180) == 2
    finally:
        s.kill()
    out = s.log()
    assert "Traceback" not in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"doorstep: error: the store {s.data / 'doorstep.db'} is damaged")
    )


def test_shutdown_does_not_wait_for_an_upload_being_ingested(serve: Serve, tmp_path: Path) -> None:
    """A long document (~2,000 chunks: minutes of embedding) uploaded, then SIGTERM: the server stops within
    its graceful-shutdown time and an embedding batch, and nothing of the document is in the index."""
    body = "\n\n".join(
        f"第{n + 1}条 关于社区第{n}号公共设施的管理，住户应当爱护设施，损坏照价赔偿，具体办法由业主委员会另行规定。"
        for n in range(9000)
    )
    token = f"Bearer {ADMIN_TOKEN}"  # configured in the harness's test config

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server goes away mid-request: expected
            httpx.post(
                f"{serve.url}/admin/knowledge/documents",
                headers={"Authorization": token},
                files={"file": ("长规定.txt", f"长规定\n\n{body}".encode(), "text/plain")},
                timeout=600,
            )

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    wait_for("the upload to be ingesting", lambda: "admin API: ingesting 长规定.txt" in serve.log(), 60)
    assert serve.stop(timeout=60) in (0, -15)
    assert "长规定.txt" not in doorstep("kb", "stats", "--json", env=serve.env).stdout


# --- the read side: a process that answers while another writes ----------------------------------------------

READER = """
import sys
from pathlib import Path
sys.path.insert(0, {root!r})
from bot.config import load_config
from knowledge.service import open_knowledge
from tests.knowledge_support import HashEncoder
config = load_config(Path({root!r}) / "config" / "doorstep.yaml")
kb = open_knowledge(config, index_dir=Path(sys.argv[1]), ingest_sample_if_empty=False, encoder=HashEncoder())
print(kb.ingest([Path(sys.argv[2])]).summary(), flush=True)
kb.close()
"""


def test_a_reader_follows_a_writer_in_another_process(config: Config, tmp_path: Path) -> None:
    """Embedded Chroma in two processes: what this process had open goes stale when the other writes; it is
    reopened when the generation moved, so the answers follow and never fail."""
    index = tmp_path / "index"
    kb = open_knowledge(config, index_dir=index, ingest_sample_if_empty=False, encoder=HashEncoder())
    try:
        first = tmp_path / "停车.md"
        first.write_text(
            "# 停车\n\n" + "\n\n".join(f"## 第{i}区\n停车场第{i}区早上{i}点开放。" for i in range(30)),
            "utf-8",
        )
        kb.ingest([first])
        assert kb.retrieve("停车场开放")[0].chunk.source == "停车.md"
        second = tmp_path / "垃圾.md"
        second.write_text(
            "# 垃圾\n\n" + "\n\n".join(f"## 第{i}类\n垃圾分类第{i}类晚上{i}点投放。" for i in range(40)),
            "utf-8",
        )
        child = subprocess.run(
            [sys.executable, "-c", READER.format(root=str(ROOT)), str(index), str(second)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert child.returncode == 0, child.stderr
        for _ in range(3):  # before: stale results, then "Error finding id"
            assert kb.retrieve("垃圾分类投放")[0].chunk.source == "垃圾.md"
            assert kb.retrieve("停车场开放")[0].chunk.source == "停车.md"
    finally:
        kb.close()


async def test_a_failed_index_read_is_answered_in_chinese_and_recovered(
    config: Config, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chromadb.errors import InternalError

    kb = open_knowledge(config, ingest_sample_if_empty=False, encoder=HashEncoder())
    doc = config.data_dir / "游泳馆.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(SWIMMING, encoding="utf-8")
    kb.ingest([doc])
    channel = RecordingChannel()
    app = App(config, clock=clock, channels={"rec": channel}, knowledge=kb)
    await app.start(background=False)
    say = Say()
    real = kb.index._dense
    failures = {"left": 0}

    def flaky(*args: object, **kw: object) -> object:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise InternalError("Error executing plan: Internal error: Error finding id")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(kb.index, "_dense", flaky)
    try:
        failures["left"] = 1  # once: reopened and read again, the resident never notices
        assert kb.retrieve("游泳馆几点开门")[0].chunk.source == "游泳馆.md"
        assert kb.index._reopens == 1
        failures["left"] = 2  # still failing after reopening: a clear reply, not the generic failure
        await app.handle(say("游泳馆收费多少", mention=True, sender="u2"))
        await app.settle()
        assert channel.texts()[-1].endswith(UNAVAILABLE) and FAILED not in channel.texts()[-1]
        await app.handle(say("游泳馆周一开吗", mention=True, sender="u3"))  # and the next one is answered
        await app.settle()
        assert UNAVAILABLE not in channel.texts()[-1] and FAILED not in channel.texts()[-1]
        assert failures["left"] == 0 and len(channel.texts()) == 2
    finally:
        await app.stop()
        kb.close()


# --- the hand-off's own logic, against the web app on a real port ----------------------------------------------


def test_the_hand_off_reports_each_file_and_replaces(
    config: Config, clock: ManualClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `kb ingest` does through a server, line by line: files added, a failure named with its reason
    (an unknown community, a broken file, a missing path), `--replace` removing the server's other documents,
    and `kb remove` by name and by community/name."""
    from backend.testing import running
    from bot.web.app import create_web_app
    from knowledge.cli import ingest_via_server, remove_via_server

    config.main.http.admin_token = "handoff-test-token"
    kb = open_knowledge(config, ingest_sample_if_empty=False, encoder=HashEncoder())
    app = App(config, clock=clock, channels={}, knowledge=kb)
    docs = tmp_path / "docs"
    (docs / "communities" / "示例社区").mkdir(parents=True)
    (docs / "communities" / "外星社区").mkdir(parents=True)
    (docs / "游泳馆.md").write_text(SWIMMING, encoding="utf-8")
    (docs / "communities" / "示例社区" / "停车.md").write_text(
        "# 停车\n\n第一条 消防通道禁止停车。\n", "utf-8"
    )
    (docs / "communities" / "外星社区" / "飞船.md").write_text("# 飞船\n\n飞船停在楼顶。\n", "utf-8")
    (docs / "坏.pdf").write_bytes(b"%PDF-1.4 garbage")
    try:
        with running(create_web_app(app, manage_lifecycle=False)) as url:
            holder = Holder(pid=os.getpid(), role="serve", url=url, token="handoff-test-token")
            with ServerClient(holder) as client:
                report = ingest_via_server(client, [str(docs), str(tmp_path / "没有.md")])
                by_name = {r.source: r for r in report.files}
                assert by_name["游泳馆.md"].status == "added" and by_name["停车.md"].community == "示例社区"
                assert (
                    by_name["飞船.md"].status == "failed"
                    and "not in config/groups.yaml" in by_name["飞船.md"].reason
                )
                assert by_name["坏.pdf"].status == "failed" and "PDF" in by_name["坏.pdf"].reason
                assert by_name["没有.md"].reason == "no such file or directory"
                again = ingest_via_server(client, [str(docs / "游泳馆.md")], replace=True)
                assert [(r.source, r.status) for r in again.files] == [
                    ("游泳馆.md", "unchanged"),
                    ("停车.md", "removed"),
                ]
                assert [d["source"] for d in client.documents()] == ["游泳馆.md"]
                assert remove_via_server(client, ["示例社区/游泳馆.md"]) == []
                assert remove_via_server(client, ["游泳馆.md"]) == ["/游泳馆.md"]
        out = capsys.readouterr().out
        assert "FAILED" in out and "added" in out and "removed" in out
    finally:
        asyncio.run(app.stop())
        kb.close()
