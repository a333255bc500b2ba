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


def extract_passage(question: str, chunk: Chunk, max_chars: int = MAX_CHARS) -> str:
    if chunk.kind == "entry":
        return _entry(question, chunk)
    body = _ARTICLE_HEAD.sub("", chunk.text.strip()) if chunk.kind == "article" else chunk.text.strip()
    body = re.sub(r"\s*\n\s*", "", body) if len(body) <= max_chars else body
    if len(body) <= max_chars:
        return body
    qtok = set(tokenize(question))
    sents = sentences(body)
    scored = sorted(range(len(sents)), key=lambda i: (_weight(qtok, sents[i]), -i), reverse=True)
    chosen: list[int] = []
    used = 0
    for i in scored:
        if used and used + len(sents[i]) > max_chars:
            continue
        chosen.append(i)
        used += len(sents[i])
        # a list item needs the sentence that introduces the list
        lead = next((j for j in range(i - 1, -1, -1) if sents[j].endswith(("：", ":"))), None)
        if (
            lead is not None
            and lead not in chosen
            and sents[i].startswith(("（", "("))
            and used + len(sents[lead]) <= max_chars + 60
        ):
            chosen.append(lead)
            used += len(sents[lead])
        if used >= max_chars * 0.6:
            break
    text = "".join(sents[i] for i in sorted(chosen))
    if len(text) > max_chars + 60:
        text = text[: max_chars + 60].rstrip("，、；") + "……"
    return text


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
