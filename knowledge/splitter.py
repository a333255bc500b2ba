"""Chinese-aware splitting that keeps meaning whole.

- a regulation splits by article (第X条), each carrying its 编/章/节 titles as context;
- Markdown splits by heading (LangChain's MarkdownHeaderTextSplitter), long sections by sentence;
- prose splits by sentence (。！？；) into windows that overlap by one sentence;
- a catalog gives one chunk per entry (a service with its place, hours, phone ...).
"""

from __future__ import annotations

import re

from langchain_text_splitters import MarkdownHeaderTextSplitter

from knowledge.chunks import Chunk, ChunkKind
from knowledge.loaders import ARTICLE_RE, NAME_LABEL, LoadedDocument

MAX_CHARS = 480  # ~ what e5-small reads well and a phone screen can quote from
PROSE_CHARS = 280
HEADING_RE = re.compile(r"^\s*(?:#{1,6}\s*)?(第[一二三四五六七八九十百千零〇\d]+([编章节]))\s*(.*)$")
SENTENCE_RE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]*[”’」』）)]*")
_LEVEL = {"编": 0, "章": 1, "节": 2}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE_RE.findall(text) if s.strip()]


def split_document(doc: LoadedDocument, community: str = "") -> list[Chunk]:
    if doc.kind == "regulation":
        parts = _regulation(doc)
    elif doc.kind == "markdown":
        parts = _markdown(doc)
    elif doc.kind == "catalog":
        parts = _catalog(doc)
    else:
        parts = _prose(doc.text, "", "")
    source = doc.path.name
    return [
        Chunk(
            text=text,
            source=source,
            title=doc.title,
            locator=loc,
            kind=kind,
            context=ctx,
            community=community,
            ordinal=i,
        )
        for i, (text, loc, ctx, kind) in enumerate(parts)
        if text.strip()
    ]


Part = tuple[str, str, str, ChunkKind]  # text, locator, context, kind


def _pack(paragraphs: list[str], limit: int) -> list[str]:
    """Consecutive paragraphs packed into pieces of at most `limit` characters (a longer paragraph
    is cut at sentences)."""
    pieces: list[str] = []
    cur = ""
    for p in paragraphs:
        units = [p] if len(p) <= limit else sentences(p)
        for u in units:
            if cur and len(cur) + len(u) + 1 > limit:
                pieces.append(cur)
                cur = ""
            cur = f"{cur}\n{u}" if cur else u
    if cur:
        pieces.append(cur)
    return pieces


def _regulation(doc: LoadedDocument) -> list[Part]:
    parts: list[Part] = []
    heads: dict[int, str] = {}
    locator, body = "", list[str]()

    def flush() -> None:
        if not locator or not body:
            return
        ctx = " ".join(heads[k] for k in sorted(heads))
        text = "\n".join(body)
        for piece in _pack(body, MAX_CHARS) if len(text) > MAX_CHARS else [text]:
            parts.append((piece, locator, ctx, "article"))

    for raw in doc.text.splitlines():
        line = raw.strip()
        if not line:
            continue
        h = HEADING_RE.match(line)
        if h and not ARTICLE_RE.match(line):
            flush()
            locator, body = "", list[str]()
            level = _LEVEL[h.group(2)]
            for k in [k for k in heads if k >= level]:
                del heads[k]
            title = re.sub(r"\s+", "", h.group(3))
            title = re.sub(r"[（(]节选[）)]", "", title)
            heads[level] = f"{h.group(1)} {title}".strip()
            continue
        m = ARTICLE_RE.match(line)
        if m:
            flush()
            locator, body = m.group(0).strip(), [line]
        elif locator:
            body.append(line)
    flush()
    return parts


def _markdown(doc: LoadedDocument) -> list[Part]:
    splitter = MarkdownHeaderTextSplitter(
        headers_to_split_on=[("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")], strip_headers=True
    )
    parts: list[Part] = []
    for d in splitter.split_text(doc.text):
        heads = [d.metadata[k] for k in ("h1", "h2", "h3", "h4") if d.metadata.get(k)]
        inner = [h for h in heads if h != doc.title]  # the document title is not a place inside it
        locator = inner[-1] if inner else ""
        ctx = " ".join(inner[:-1])
        content = d.page_content.strip()
        if not content:
            continue
        if len(content) <= MAX_CHARS:
            parts.append((content, locator, ctx, "section"))
        else:
            parts.extend((t, locator, ctx, "section") for t, _, _, _ in _prose(content, locator, ctx))
    return parts


def _prose(text: str, locator: str, ctx: str) -> list[Part]:
    sents = sentences(text)
    parts: list[Part] = []
    i = 0
    n = 0
    while i < len(sents):
        j, size = i, 0
        while j < len(sents) and (j == i or size + len(sents[j]) <= PROSE_CHARS):
            size += len(sents[j])
            j += 1
        n += 1
        parts.append(("".join(sents[i:j]), locator or f"第{n}段", ctx, "prose"))
        if j >= len(sents):
            break
        i = j - 1 if j - 1 > i else j  # one sentence of overlap keeps a thought that spans the cut
    return parts


def _catalog(doc: LoadedDocument) -> list[Part]:
    parts: list[Part] = []
    for e in doc.entries:
        name = e.get(NAME_LABEL, "")
        lines = [name] + [f"{k}：{v}" for k, v in e.items() if k != NAME_LABEL]
        parts.append(("\n".join(lines), name, e.get("类别", ""), "entry"))
    return parts
