"""Ingestion: content hashes (unchanged = no-op, changed = replaced), removal, communities, the embedding cache,
bad files in a batch, the `kb` commands, and the index on both Chroma back ends. A fast hash encoder stands in
for the model except where the command itself is under test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import Config
from knowledge.service import KnowledgeService, open_knowledge
from tests.knowledge_support import ROOT, HashEncoder

RULES = "# 停车规定\n\n第一条 车辆应当停放在车位内。\n\n第二条 消防通道禁止停车。\n\n第三条 外来车辆凭登记进入。\n"
CATALOG = "服务名称,地点,开放时间\n助老食堂,12号楼,11:00-13:00\n四点半课堂,活动室,15:30-18:00\n"


@pytest.fixture
def encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture
def kb(
    config: Config, tmp_path: Path, encoder: HashEncoder, chroma_url: str, chroma_collection: str
) -> Iterator[KnowledgeService]:
    """The index on both back ends: embedded Chroma with its records in SQLite, and a Chroma server holding
    the records too (`chroma_url`)."""
    config.main.index.chroma_url = chroma_url
    config.main.index.collection = chroma_collection
    service = open_knowledge(
        config, index_dir=tmp_path / "index", ingest_sample_if_empty=False, encoder=encoder
    )
    yield service
    service.close()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    (d / "communities" / "甲社区").mkdir(parents=True)
    (d / "communities" / "乙社区").mkdir(parents=True)
    (d / "停车规定.txt").write_text(RULES, encoding="utf-8")
    (d / "communities" / "甲社区" / "甲目录.csv").write_text(CATALOG, encoding="utf-8")
    (d / "communities" / "乙社区" / "乙目录.csv").write_text(
        CATALOG.replace("11:00-13:00", "11:30-12:30"), encoding="utf-8"
    )
    (d / "README.md").write_text("attribution, not knowledge", encoding="utf-8")
    return d


def test_ingest_then_unchanged_is_a_no_op(kb: KnowledgeService, docs: Path, encoder: HashEncoder) -> None:
    first = kb.ingest([docs])
    assert {r.source: r.status for r in first.files} == {
        "停车规定.txt": "added",
        "甲目录.csv": "added",
        "乙目录.csv": "added",
    }
    assert kb.index.count() == 3 + 2 + 2
    calls = encoder.calls
    again = kb.ingest([docs])
    assert {r.status for r in again.files} == {"unchanged"}
    assert encoder.calls == calls and again.encoded == 0  # nothing re-read by the model


def test_changed_file_replaces_its_chunks_and_reuses_cached_vectors(
    kb: KnowledgeService, docs: Path, encoder: HashEncoder
) -> None:
    kb.ingest([docs])
    path = docs / "停车规定.txt"
    path.write_text(RULES.replace("第三条 外来车辆凭登记进入。\n", ""), encoding="utf-8")
    report = kb.ingest([path])
    (r,) = report.files
    assert r.status == "updated" and r.chunks == 2
    assert report.cached == 2 and report.encoded == 0  # the two unchanged articles come from the cache
    locators = {
        h.chunk.locator for h in kb.retrieve("外来车辆登记", k=10) if h.chunk.source == "停车规定.txt"
    }
    assert "第三条" not in locators  # the old chunk is gone from both retrievers
    assert kb.index.count() == 2 + 2 + 2


def test_remove_by_file_name(kb: KnowledgeService, docs: Path) -> None:
    kb.ingest([docs])
    assert kb.remove(["停车规定.txt"]) == ["/停车规定.txt"]
    assert all(h.chunk.source != "停车规定.txt" for h in kb.retrieve("消防通道禁止停车", k=10))
    assert kb.remove(["不存在.txt"]) == []


def test_replace_drops_documents_not_in_the_batch(kb: KnowledgeService, docs: Path) -> None:
    kb.ingest([docs])
    report = kb.ingest([docs / "停车规定.txt"], replace=True)
    assert sorted(r.status for r in report.files) == ["removed", "removed", "unchanged"]
    assert kb.stats()["documents"] == 1


def test_communities_from_folders_filter_the_search(kb: KnowledgeService, docs: Path) -> None:
    kb.ingest([docs])
    st = kb.stats()["communities"]
    assert st["甲社区"] == {"documents": 1, "chunks": 2} and st[""] == {"documents": 1, "chunks": 3}
    jia = {h.chunk.source for h in kb.retrieve("助老食堂开放时间", "甲社区", k=10)}
    assert "甲目录.csv" in jia and "乙目录.csv" not in jia and "停车规定.txt" in jia
    both = {h.chunk.source for h in kb.retrieve("助老食堂开放时间", None, k=10)}
    assert {"甲目录.csv", "乙目录.csv"} <= both


def test_community_given_at_ingest(kb: KnowledgeService, tmp_path: Path) -> None:
    p = tmp_path / "目录.csv"
    p.write_text(CATALOG, encoding="utf-8")
    (r,) = kb.ingest([p], community="丙社区").files
    assert r.community == "丙社区"
    assert not kb.retrieve("助老食堂", "丁社区")


def test_bad_files_are_named_and_the_rest_ingested(kb: KnowledgeService, docs: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "空.txt").write_bytes(b"")
    (bad / "坏.pdf").write_bytes(b"%PDF-1.4 garbage")
    with (bad / "大.txt").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    report = kb.ingest([bad, docs, tmp_path / "missing.md"])
    failed = {r.source: r.reason for r in report.failed}
    assert set(failed) == {"空.txt", "坏.pdf", "大.txt", "missing.md"}
    assert failed["空.txt"] == "empty file" and "too large" in failed["大.txt"] and "PDF" in failed["坏.pdf"]
    assert report.count("added") == 3


def test_kb_commands(config: Config, docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real commands with the real model, on a small batch with one broken file."""
    index = tmp_path / "cli-index"
    (docs / "坏.pdf").write_bytes(b"%PDF-1.4 garbage")
    assert main(["kb", "ingest", str(docs), "--index", str(index)]) == 2  # a file failed
    out = capsys.readouterr().out
    assert "FAILED" in out and "坏.pdf" in out and "added" in out and "甲目录.csv" in out
    (docs / "坏.pdf").unlink()
    assert main(["kb", "ingest", str(docs), "--index", str(index)]) == 0
    assert "3 unchanged" in capsys.readouterr().out
    assert main(["kb", "stats", "--index", str(index), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["documents"] == 3 and st["chunks"] == 7 and st["index_bytes"] > 0
    assert main(["ask", "消防通道能停车吗", "--index", str(index), "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert set(a) == {"question", "found", "answer", "citations", "latency_ms"}
    assert a["citations"][0]["source"] == "停车规定.txt" and a["citations"][0]["locator"] == "第二条"
    assert main(["kb", "remove", "停车规定.txt", "--index", str(index)]) == 0
    assert main(["kb", "remove", "停车规定.txt", "--index", str(index)]) == 2  # not there any more


def test_unreadable_qa_file_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "qa.jsonl"
    bad.write_text('{"question": "x", "source": "a.txt"}\nnot json\n', encoding="utf-8")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "qa.jsonl:2" in err and "Traceback" not in err
    assert main(["eval", str(tmp_path / "none.jsonl")]) == 2


def test_index_on_both_chroma_back_ends(
    config: Config, tmp_path: Path, chroma_url: str, chroma_collection: str, docs: Path
) -> None:
    config.main.index.chroma_url = chroma_url
    config.main.index.collection = chroma_collection
    service = open_knowledge(
        config, index_dir=tmp_path / "idx", ingest_sample_if_empty=False, encoder=HashEncoder()
    )
    try:
        service.ingest([docs])
        hits = service.retrieve("消防通道禁止停车")
        assert hits[0].chunk.source == "停车规定.txt" and hits[0].chunk.locator == "第二条"
        assert hits[0].dense > 0.5
    finally:
        service.close()


def test_sample_paths_point_at_the_bundled_knowledge(config: Config) -> None:
    paths = config.knowledge_paths
    assert paths == [ROOT / "knowledge" / "sample"]
    assert (paths[0] / "regulations" / "物业管理条例.txt").exists()
