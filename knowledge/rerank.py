"""The reranking stage: the best candidates of the fused search, re-scored one by one on what the question asks.

No cross-encoder ships its weights inside a PyPI package for Chinese (the packaged MiniLM models are English
bi-encoders), so the reranker is built from what is there: the first stage's fused score of each candidate,
plus two signals the first stage cannot see:

- **answer type**: what kind of answer the question wants and whether the candidate can give it. 多久/几天 want
  a time limit (30日内, 每年), 几点/什么时候 a schedule (8:00-17:00, 工作日), 多少钱 an amount (20元, 免费),
  去哪/在哪 a place (到…办理, 窗口, an entry's 地点), 怎么/咋办 a procedure (申请, 办理, a guide section or a
  catalog entry). A passage that cannot carry the answer type is rarely the answer, however close its words;
- `guide`: for how/where questions, a procedure section or service entry is preferred to a rule.

Learned weights over more features (each view's BM25, the head field, coverage) were measured by
`python -m knowledge.calibrate rerank` and lost to the fused order under cross-validation on the dev set
(docs/knowledge.md), so the reranker keeps the fused order and lets the two new signals break near-ties. The
cue words are general Chinese question words, not words of any question set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from knowledge.index import Hit

# --- answer types --------------------------------------------------------------------------------------------

QUESTION_TYPES: dict[str, tuple[str, ...]] = {
    "duration": (
        "多久",
        "多长时间",
        "多长",
        "几天",
        "多少天",
        "几个月",
        "多少年",
        "几年",
        "期限",
        "有效期",
        "提前几",
        "提前多",
        "多少日",
        "多少个工作日",
        "一届",
        "几届",
    ),
    "schedule": (
        "几点",
        "什么时候",
        "啥时候",
        "什么时间",
        "哪天",
        "星期几",
        "周几",
        "礼拜几",
        "开门",
        "关门",
        "营业",
        "开放时间",
        "上班时间",
        "几号",
    ),
    "money": (
        "多少钱",
        "几块",
        "几毛",
        "收费",
        "费用",
        "价格",
        "价钱",
        "收钱",
        "要钱",
        "花钱",
        "免费",
        "罚多少",
        "罚款",
        "补贴",
        "交多少",
        "一平米",
        "便宜",
        "贵不贵",
    ),
    "place": (
        "去哪",
        "在哪",
        "哪里",
        "哪儿",
        "到哪",
        "找谁",
        "地址",
        "位置",
        "什么地方",
        "哪个部门",
        "哪个窗口",
    ),
    "procedure": (
        "怎么办",
        "咋办",
        "怎么申请",
        "如何申请",
        "怎么办理",
        "怎么补",
        "咋补",
        "怎么交",
        "怎么弄",
        "怎么处理",
        "流程",
        "手续",
        "带什么",
        "带啥",
        "要带",
        "材料",
        "怎么报名",
        "怎么登记",
    ),
    "phone": ("电话", "号码", "联系方式", "怎么联系"),
}
_NUM = "[0-9０-９一二三四五六七八九十百千万两零〇]"
PASSAGE_TYPES: dict[str, re.Pattern[str]] = {
    "duration": re.compile(
        rf"{_NUM}+\s*(?:个)?(?:工作日|日|天|周|星期|个月|月|年|小时|届)(?:内|以内|之内|前|后|起|以上|一次)?"
        r"|期限|届满|任期|每年|每届|定期|及时|当场|当日|当天"
    ),
    "schedule": re.compile(
        r"\d{1,2}\s*[:：]\s*\d{2}|周[一二三四五六日末]|星期|礼拜|工作日|节假日|全天|24小时|上午|下午|晚上|每天|每日|每周|每月"
    ),
    "money": re.compile(
        rf"{_NUM}+(?:\.\d+)?\s*(?:元|块)|免费|收费|费用|罚款|补贴|工本费|押金|价格|缴纳|交纳"
    ),
    "place": re.compile(
        r"(?:到|向|在|去|由)[^，。；\n]{1,30}(?:办理|申请|提出|登记|报告|备案|补办|投放|领取|受理|调解|起诉|堆放)"
        r"|窗口|服务中心|服务站|前台|门卫室|受理|登记机关|派出所|地点|位置|\d+号楼|\d+室"
    ),
    "procedure": re.compile(r"申请|办理|程序|登记|提交|携带|带上|审批|审核|手续|按照下列|报名|预约|备案"),
    "phone": re.compile(r"\d{3,4}-\d{7,8}|电话"),
}
# How much: a question that asks for an amount ("多少钱", "一平米交多少") is answered only by a passage that gives
# one (a figure in 元, or 免费). A passage can name 费用 without an amount ("业主应当交纳物业服务费用" says who pays,
# not how much), which the reranker's softer `PASSAGE_TYPES` accept; the found decision asks for the amount.
AMOUNT_CUES = ("多少钱", "几块", "几毛", "交多少", "罚多少", "价格", "价钱", "一平米", "每平米", "每平方")
AMOUNT = re.compile(rf"{_NUM}+(?:\.\d+)?\s*(?:元|块|角|毛)|免费|不收费|不收取|无偿|不要钱")
# catalog fields that carry an answer type by themselves
ENTRY_FIELDS = {
    "duration": ("开放时间",),
    "schedule": ("开放时间",),
    "money": ("费用",),
    "place": ("地点",),
    "procedure": ("需要携带", "说明"),
    "phone": ("联系电话",),
}
HOW = frozenset({"place", "procedure"})


def question_types(question: str) -> frozenset[str]:
    """The answer types a question asks for (none for a yes/no or open question)."""
    q = question.replace(" ", "")
    return frozenset(t for t, cues in QUESTION_TYPES.items() if any(c in q for c in cues))


def passage_types(text: str, kind: str) -> frozenset[str]:
    found = {t for t, rx in PASSAGE_TYPES.items() if rx.search(text)}
    if kind == "entry":
        for t, fields in ENTRY_FIELDS.items():
            if any(f"\n{f}：" in text for f in fields):
                found.add(t)
        found.add("procedure")  # a service entry is the place-and-how of its service
    if kind == "section":
        found.add("procedure")
    return frozenset(found)


def asks_amount(question: str) -> bool:
    q = question.replace(" ", "")
    return any(c in q for c in AMOUNT_CUES)


def gives_amount(text: str, kind: str) -> bool:
    return bool(AMOUNT.search(text)) or (kind == "entry" and "\n费用：" in text)


def type_match(qtypes: frozenset[str], ptypes: frozenset[str]) -> float:
    """Share of the question's answer types the passage can carry (1.0 for a question without a type)."""
    if not qtypes:
        return 1.0
    return len(qtypes & ptypes) / len(qtypes)


# --- the reranker --------------------------------------------------------------------------------------------

FEATURES = ("fused", "type", "guide")
CANDIDATES = 20  # fused candidates the reranker re-scores


@dataclass(frozen=True, slots=True)
class Reranker:
    """A linear score over `FEATURES`: the fused score (normalised by the best candidate's), whether the
    candidate can carry the answer type the question asks for, and, for how/where questions, whether it is a
    procedure section or service entry. The weights come from `python -m knowledge.calibrate rerank`."""

    weights: tuple[float, ...]

    def features(self, question: str, hits: Sequence[Hit]) -> list[dict[str, float]]:
        qtypes = question_types(question)
        how = bool(qtypes & HOW)
        best = max((h.score for h in hits), default=1.0) or 1.0
        return [
            {
                "fused": h.score / best,
                "type": type_match(qtypes, passage_types(h.chunk.text, h.chunk.kind)),
                "guide": float(how and h.chunk.kind in ("entry", "section")),
            }
            for h in hits
        ]

    def rerank(self, question: str, hits: Sequence[Hit]) -> list[Hit]:
        feats = self.features(question, hits)
        scored = [
            replace(h, rerank=sum(w * f[name] for name, w in zip(FEATURES, self.weights, strict=True)))
            for h, f in zip(hits, feats, strict=True)
        ]
        return sorted(scored, key=lambda h: h.rerank, reverse=True)


# Chosen on tests/data/knowledge_dev.jsonl by `python -m knowledge.calibrate rerank` (docs/knowledge.md): the
# middle of the region where the answer-type and guide terms cost the dev set nothing.
DEFAULT_RERANKER = Reranker(weights=(1.0, 0.1, 0.05))
