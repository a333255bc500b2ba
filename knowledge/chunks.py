"""The unit of retrieval: one article, one section, one passage of prose, or one catalog entry."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

ChunkKind = Literal["article", "section", "prose", "entry", "faq"]
_ARTICLE_HEAD = re.compile(r"^第[一二三四五六七八九十百千零〇两\d]+条(?:之[一二三四五六七八九十]+)?\s*")


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str  # what an answer quotes from
    source: str  # the file name, no directory
    title: str  # the document's title: 物业管理条例
    locator: str  # 第四十二条, a heading, or a catalog entry's name
    kind: ChunkKind
    context: str = ""  # chapter/section/heading path, indexed with the text but never quoted
    community: str = ""  # "" = global knowledge
    ordinal: int = 0  # position in its document, keeps ids unique when a locator repeats

    @property
    def embed_text(self) -> str:
        """What is embedded: the passage's own words. Measured on the dev set, prefixing the law's title,
        chapter or article number pulls every article of a law towards the same vector and costs hit@1."""
        if self.kind == "article":
            return _ARTICLE_HEAD.sub("", self.text)
        if self.kind == "section" and self.locator:
            return f"{self.locator}\n{self.text}"
        return self.text

    @property
    def index_text(self) -> str:
        """What BM25 sees: the title and context make a bare article findable by topic words."""
        head = " ".join(p for p in (self.title, self.context, self.locator) if p)
        return f"{head}\n{self.text}" if head else self.text

    @property
    def id(self) -> str:
        key = "\x1f".join((self.community, self.source, str(self.ordinal), self.locator, self.text))
        return hashlib.sha1(key.encode("utf-8")).hexdigest()
