"""Several processes on one index (issue 7): with a Chroma server, the records BM25 is built from live in the
server too, every search checks the shared generation, and a process that did not write notices another's
ingest or removal on its next question. With embedded Chroma nothing of this applies (one process, one
directory)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from knowledge.service import KnowledgeService, open_knowledge
from tests.knowledge_support import ROOT, HashEncoder

RULES = "# 停车规定\n\n第一条 车辆应当停放在车位内。\n\n第二条 消防通道禁止停车。\n\n第三条 外来车辆凭登记进入。\n"
DOGS = (
    "# 养犬管理规定\n\n第一条 携犬出户时，应当为犬只束犬链，由成年人牵领，主动避让老人和儿童。\n\n"
    "第二条 犬只在小区公共区域排泄的粪便，携犬人应当立即清除。\n"
)
DOG_QUESTION = "遛狗的时候必须拴狗绳吗"


def _open(config: Config, directory: Path, url: str, collection: str, **kw: Any) -> KnowledgeService:
    config.main.index.chroma_url = url
    config.main.index.collection = collection
    return open_knowledge(config, index_dir=directory, ingest_sample_if_empty=False, **kw)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "停车规定.txt").write_text(RULES, encoding="utf-8")
    return d


def test_records_live_where_the_vectors_do(
    config: Config, tmp_path: Path, chroma_url: str, chroma_collection: str, docs: Path
) -> None:
    """Embedded: a SQLite file in the index directory. Server: nothing of the index's records on local disk."""
    kb = _open(config, tmp_path / "idx", chroma_url, chroma_collection, encoder=HashEncoder())
    try:
        kb.ingest([docs])
        assert (tmp_path / "idx" / "meta.sqlite").exists() == (not chroma_url)
        assert not list((tmp_path / "idx").glob("bm25-*")) or not chroma_url
        assert kb.stats()["documents"] == 1 and kb.index.count() == 3
    finally:
        kb.close()


@pytest.mark.parametrize("chroma_url", ["server"], indirect=True)
def test_a_second_index_on_the_server_follows_ingest_and_removal(
    config: Config, tmp_path: Path, chroma_url: str, chroma_collection: str, docs: Path
) -> None:
    """Two indexes in one process stand in for two processes: each has its own directory (cache, nothing
    else) and its own BM25, and sees the other's writes through the shared records and generation."""
    writer = _open(config, tmp_path / "a", chroma_url, chroma_collection, encoder=HashEncoder())
    reader = _open(config, tmp_path / "b", chroma_url, chroma_collection, encoder=HashEncoder())
    try:
        assert reader.retrieve("消防通道禁止停车") == []
        writer.ingest([docs])
        hits = reader.retrieve("消防通道禁止停车")
        assert hits and hits[0].chunk.locator == "第二条" and hits[0].bm25_rank == 0  # BM25 rebuilt too
        assert reader.stats()["documents"] == 1 and reader.index.count() == 3
        assert reader.ingest([docs]).files[0].status == "unchanged"  # the same records, hash included

        (docs / "停车规定.txt").write_text(RULES.replace("外来车辆", "访客车辆"), encoding="utf-8")
        writer.ingest([docs])
        hits = reader.retrieve("访客车辆登记", k=3)
        assert hits[0].chunk.locator == "第三条" and "访客车辆" in hits[0].chunk.text
        assert hits[0].bm25_rank == 0

        assert writer.remove(["停车规定.txt"]) == ["/停车规定.txt"]
        assert reader.retrieve("消防通道禁止停车") == []
        assert reader.stats()["documents"] == 0
    finally:
        writer.close()
        reader.close()


class _LineProcess:
    """`doorstep ask --json` in line mode: one question in, one JSON answer out, the process kept open."""

    def __init__(self, args: list[str], env: dict[str, str], stderr: Path) -> None:
        self._err = stderr.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
            cwd=ROOT,
            text=True,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def ask(self, question: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(question + "\n")
        self.proc.stdin.flush()
        try:
            # a guard against a hung child, not a performance assertion
            return dict(json.loads(self._lines.get(timeout=300)))
        except queue.Empty:
            pytest.fail("the asking process gave no answer; its stderr is in " + self._err.name)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()


@pytest.fixture
def asker(tmp_path: Path, chroma_url: str, chroma_collection: str) -> Iterator[_LineProcess]:
    env = {
        **os.environ,
        "DOORSTEP_DATA": str(tmp_path / "b-data"),
        "DOORSTEP_INDEX__CHROMA_URL": chroma_url,
        "DOORSTEP_INDEX__COLLECTION": chroma_collection,
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DOORSTEP_INDEX", None)
    cmd = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]
    p = _LineProcess(
        [*cmd, "ask", "--json", "--index", str(tmp_path / "b-index")], env, tmp_path / "asker.err"
    )
    yield p
    p.close()


@pytest.mark.parametrize("chroma_url", ["server"], indirect=True)
def test_one_process_ingests_another_answers(
    config: Config, tmp_path: Path, chroma_url: str, chroma_collection: str, docs: Path, request: Any
) -> None:
    """Process A (this one) ingests into the server-backed index while process B (`doorstep ask` in line mode,
    started once, with the real model) answers: B answers from a new document after A's ingest, and no longer
    cites it after A's removal."""
    a = _open(config, tmp_path / "a-index", chroma_url, chroma_collection)
    try:
        a.ingest([docs])  # B starts on a non-empty index, so it does not ingest the sample itself
        b: _LineProcess = request.getfixturevalue("asker")

        first = b.ask("消防通道能停车吗")
        assert first["found"] and first["citations"][0]["source"] == "停车规定.txt"
        before = b.ask(DOG_QUESTION)
        assert all(c["source"] != "养犬管理规定.txt" for c in before["citations"])

        (docs / "养犬管理规定.txt").write_text(DOGS, encoding="utf-8")
        assert a.ingest([docs]).count("added") == 1
        after = b.ask(DOG_QUESTION)
        assert after["found"], after
        assert after["citations"][0]["source"] == "养犬管理规定.txt"

        assert a.remove(["养犬管理规定.txt"]) == ["/养犬管理规定.txt"]
        gone = b.ask(DOG_QUESTION)
        assert all(c["source"] != "养犬管理规定.txt" for c in gone["citations"])
        assert b.ask("消防通道能停车吗")["citations"][0]["source"] == "停车规定.txt"
    finally:
        a.close()
