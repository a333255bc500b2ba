"""Chinese text for retrieval: jieba tokens without function words, and the term lexicon that maps what
residents say (电瓶车, 狗, 物业费) to what regulations and catalogs say (电动自行车, 犬只, 物业服务费)."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping

import jieba

jieba.setLogLevel(logging.WARNING)

# Words jieba's default dictionary cuts apart, which residents and the bundled knowledge both use.
DOMAIN_WORDS = (
    "电动自行车",
    "助老食堂",
    "四点半课堂",
    "骑手驿站",
    "党群服务中心",
    "网格员",
    "业主大会",
    "业主委员会",
    "物业服务企业",
    "物业服务费",
    "物业服务合同",
    "物业服务人",
    "专项维修资金",
    "共用部位",
    "共用设施设备",
    "居民委员会",
    "最低生活保障",
    "特困人员",
    "临时救助",
    "生活垃圾",
    "厨余垃圾",
    "可回收物",
    "有害垃圾",
    "其他垃圾",
    "充电站",
    "调解室",
    "卫生服务站",
    "犬只",
    "养犬",
    "装饰装修",
    "门禁卡",
    "停车位",
    "车位",
    "业委会",
    "居委会",
    "低保",
    "电瓶车",
    "飞线充电",
    "集中充电",
)

STOPWORDS = frozenset(
    """的 了 吗 呢 吧 啊 呀 哦 嘛 哈 么 是 在 我 你 他 她 它 我们 你们 他们 咱们 这 那 这个 那个 这些 那些 有 和 与 或 及
    就 都 也 还 又 要 想 会 能 能不能 可以 可不可以 可不可以 什么 怎么 怎么办 怎样 如何 多少 哪里 哪儿 哪 几 请问 问 问一下
    一下 下 没有 没 不 得 地 着 过 吗 呢 啥 咋 谁 给 让 被 把 对 对于 从 向 到 为 为了 以 之 其 所 等 等等 应当 应该 可 该
    个 人家 大家 自己 现在 一个 一些 有没有 是不是 行不行 好 请 帮 帮忙 知道 告诉 小门 家门口 助手 一般 需要 必须 如果 时候
    那么 这么 还是 但是 而且 并且 或者 因为 所以 依照 按照 根据 规定 有关 相关 本 条例 办法 法""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[\w\u4e00-\u9fff]", re.UNICODE)
_LOCK = threading.Lock()
_ADDED: set[str] = set()


def add_words(words: Iterable[str]) -> None:
    """Teach jieba words it would otherwise cut apart (idempotent)."""
    with _LOCK:
        for w in words:
            w = w.strip()
            if 1 < len(w) <= 12 and w not in _ADDED:
                jieba.add_word(w, freq=200000)
                _ADDED.add(w)


add_words(DOMAIN_WORDS)


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens (a long word also yields its parts: 助老食堂 -> 助老, 食堂, 助老食堂),
    lower-cased, without punctuation and function words."""
    out = []
    for t in jieba.cut_for_search(text.lower()):
        t = t.strip()
        if t and _WORD.search(t) and t not in STOPWORDS:
            out.append(t)
    return out


_NOT_WORD = re.compile(r"[^\w\u4e00-\u9fff]+", re.UNICODE)


def bigrams(text: str) -> list[str]:
    """Overlapping character bigrams: a second lexical view that survives jieba's segmentation mistakes and
    residents' typos (物业废 still shares 物业 with 物业费)."""
    t = _NOT_WORD.sub("", text.lower())
    return [t[i : i + 2] for i in range(len(t) - 1)]


class Lexicon:
    """Colloquial -> standard terms. `expand` appends the standard term of every colloquial word found
    (longest first, so 物业费 gives 物业服务费, not 物业服务企业)."""

    def __init__(self, terms: Mapping[str, str] | None = None) -> None:
        self.terms = dict(terms or {})
        self._keys = sorted(self.terms, key=len, reverse=True)
        add_words([*self.terms, *self.terms.values()])

    @property
    def signature(self) -> str:
        return hashlib.sha1(repr(sorted(self.terms.items())).encode()).hexdigest()[:12]

    def expansions(self, text: str) -> list[str]:
        found: list[str] = []
        covered = [False] * len(text)
        for k in self._keys:
            start = text.find(k)
            while start >= 0:
                if not any(covered[start : start + len(k)]):
                    for i in range(start, start + len(k)):
                        covered[i] = True
                    std = self.terms[k]
                    if std not in text and std not in found:
                        found.append(std)
                start = text.find(k, start + 1)
        return found

    def expand(self, text: str) -> str:
        extra = self.expansions(text)
        return f"{text} {' '.join(extra)}" if extra else text
