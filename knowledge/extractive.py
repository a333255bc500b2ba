"""The default answerer: the sentences of the best passage that match the question, short enough for a
phone screen, then the source line. No model writes anything, so nothing can be made up."""

from __future__ import annotations

import re

from knowledge.chunks import Chunk
from knowledge.loaders import NAME_LABEL
from knowledge.splitter import sentences
from knowledge.text import tokenize

MAX_CHARS = 160

# Which catalog fields a question asks about, by its wording.
FIELD_CUES: dict[str, tuple[str, ...]] = {
    "开放时间": (
        "几点",
        "时间",
        "开门",
        "关门",
        "营业",
        "上班",
        "开放",
        "什么时候",
        "啥时候",
        "周末",
        "几号",
        "开饭",
        "吃饭",
    ),
    "地点": ("在哪", "哪里", "哪儿", "地址", "位置", "地方", "怎么走", "在什么"),
    "联系电话": ("电话", "联系", "号码", "打给"),
    "费用": ("钱", "费", "收费", "价格", "价钱", "免费", "贵", "补贴", "多少"),
    "需要携带": ("带", "材料", "证件", "手续", "证明"),
    "服务对象": (
        "谁",
        "能不能",
        "可不可以",
        "可以",
        "条件",
        "资格",
        "外地",
        "租户",
        "年龄",
        "岁",
        "对象",
        "报名",
    ),
    "说明": ("送餐", "预约", "注意", "规定", "怎么", "如何", "能", "可以", "名额"),
}
DEFAULT_FIELDS = ("地点", "开放时间", "联系电话")
_ARTICLE_HEAD = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条(?:之[一二三四五六七八九十]+)?\s*")


def _weight(tokens: set[str], text: str) -> float:
    return sum(len(t) for t in tokens if t in text)


WHOLE_CHARS = 400  # an article or section up to this long is quoted whole
ITEM = re.compile(r"^\s*[（(][一二三四五六七八九十]+[）)]")
OMITTED = "……"


def extract_passage(question: str, chunk: Chunk, max_chars: int = MAX_CHARS) -> str:
    """What the answer quotes from a passage: a catalog entry's fields the question asks about; an article or
    section whole when it fits a phone screen (WHOLE_CHARS); otherwise its paragraphs that match the question,
    every list of steps whole, and "……" wherever something was left out, so that no step of a procedure
    silently disappears."""
    if chunk.kind == "entry":
        return _entry(question, chunk)
    body = _ARTICLE_HEAD.sub("", chunk.text.strip()) if chunk.kind == "article" else chunk.text.strip()
    paras = [p.strip() for p in body.splitlines() if p.strip()]
    if sum(len(p) for p in paras) <= WHOLE_CHARS:
        return ("\n" if any(ITEM.match(p) for p in paras) else "").join(paras)
    qtok = set(tokenize(question))
    chosen = _choose(paras, qtok, max_chars)
    pieces: list[str] = []
    last = -1
    for i in sorted(chosen):
        if i != last + 1:
            pieces.append(OMITTED)
        pieces.append(_shorten(paras[i], qtok, max_chars) if len(chosen) == 1 else paras[i])
        last = i
    if last != len(paras) - 1:
        pieces.append(OMITTED)
    text = ("\n" if any(ITEM.match(paras[i]) for i in chosen) else "").join(pieces)
    return re.sub(f"(?:\n?{OMITTED})+", OMITTED, text)


def _choose(paras: list[str], qtok: set[str], max_chars: int) -> set[int]:
    """The paragraphs to quote: the best matching first; a list item brings its lead-in and all its sibling
    items (a procedure is quoted with every step)."""
    order = sorted(range(len(paras)), key=lambda i: (_weight(qtok, paras[i]), -i), reverse=True)
    chosen: set[int] = set()
    used = 0
    for i in order:
        if chosen and (used + len(paras[i]) > max_chars or _weight(qtok, paras[i]) == 0):
            continue
        group = _list_of(paras, i)
        chosen |= group
        used = sum(len(paras[j]) for j in chosen)
        if used >= max_chars * 0.6:
            break
    return chosen


def _list_of(paras: list[str], i: int) -> set[int]:
    """Paragraph i, or, when it is a list item or the sentence that introduces a list, the lead-in and every
    item of that list."""
    is_item = bool(ITEM.match(paras[i]))
    is_lead = paras[i].endswith(("：", ":")) and i + 1 < len(paras) and bool(ITEM.match(paras[i + 1]))
    if not (is_item or is_lead):
        return {i}
    start = i if is_lead else i
    while start > 0 and ITEM.match(paras[start]):
        start -= 1
    lead = start if paras[start].endswith(("：", ":")) else None
    first = (lead + 1) if lead is not None else start + (0 if ITEM.match(paras[start]) else 1)
    end = first
    while end < len(paras) and ITEM.match(paras[end]):
        end += 1
    group = set(range(first, end))
    if lead is not None:
        group.add(lead)
    return group or {i}


def _shorten(para: str, qtok: set[str], max_chars: int) -> str:
    """One long paragraph cut to its best sentences, each gap marked."""
    if len(para) <= max_chars + 60:
        return para
    sents = sentences(para)
    order = sorted(range(len(sents)), key=lambda i: (_weight(qtok, sents[i]), -i), reverse=True)
    chosen: list[int] = []
    used = 0
    for i in order:
        if chosen and used + len(sents[i]) > max_chars:
            continue
        chosen.append(i)
        used += len(sents[i])
    out: list[str] = []
    last = -1
    for i in sorted(chosen):
        if i != last + 1:
            out.append(OMITTED)
        out.append(sents[i])
        last = i
    if last != len(sents) - 1:
        out.append(OMITTED)
    return "".join(out)


def _entry(question: str, chunk: Chunk) -> str:
    fields: dict[str, str] = {}
    for line in chunk.text.splitlines()[1:]:
        k, _, v = line.partition("：")
        if v:
            fields[k] = v
    wanted = [f for f, cues in FIELD_CUES.items() if f in fields and any(c in question for c in cues)]
    if not wanted:
        wanted = [f for f in DEFAULT_FIELDS if f in fields]
    if len(wanted) > 3:  # the most specific cues first; three fields fit a phone screen
        wanted = [f for f in FIELD_CUES if f in wanted][:3]
    name = chunk.locator or chunk.text.splitlines()[0]
    lines = [f"{name}：" if name != NAME_LABEL else ""] + [f"{f}：{fields[f]}" for f in wanted]
    return "\n".join(line for line in lines if line)


def source_line(chunk: Chunk) -> str:
    return f"来源：《{chunk.title}》{chunk.locator}" if chunk.locator else f"来源：《{chunk.title}》"
