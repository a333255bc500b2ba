"""Loaders: one file in, its text (with Markdown-style headings kept) or its catalog entries out.

Parsing is left to well-kept libraries: pypdf, python-docx, BeautifulSoup, openpyxl and the standard csv and
json modules. (LangChain's community loaders wrap the same libraries but flatten headings and tables, and
that package is being sunset, so they are not used here.) Every failure is a `LoadError` whose message is the
reason shown in the ingest summary.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DocKind = Literal["regulation", "markdown", "prose", "catalog"]

SUPPORTED = {".md", ".markdown", ".txt", ".docx", ".pdf", ".html", ".htm", ".csv", ".xlsx", ".json"}
MAX_BYTES = 20 * 1024 * 1024  # larger files are refused: no policy or catalog is that big, a dump is

# A line that starts an article: 第十五条, 第二百七十一条, 第15条
ARTICLE_RE = re.compile(r"^\s*第[一二三四五六七八九十百千零〇两\d]+条(?:之[一二三四五六七八九十]+)?")

# Column names a catalog may use, mapped to the labels residents read.
FIELD_LABELS: dict[str, str] = {
    "name": "服务名称",
    "service": "服务名称",
    "title": "服务名称",
    "名称": "服务名称",
    "服务": "服务名称",
    "项目": "服务名称",
    "服务项目": "服务名称",
    "category": "类别",
    "type": "类别",
    "分类": "类别",
    "place": "地点",
    "address": "地点",
    "location": "地点",
    "地址": "地点",
    "位置": "地点",
    "hours": "开放时间",
    "time": "开放时间",
    "open": "开放时间",
    "时间": "开放时间",
    "服务时间": "开放时间",
    "phone": "联系电话",
    "tel": "联系电话",
    "contact": "联系电话",
    "电话": "联系电话",
    "eligible": "服务对象",
    "who": "服务对象",
    "对象": "服务对象",
    "适用人群": "服务对象",
    "bring": "需要携带",
    "materials": "需要携带",
    "所需材料": "需要携带",
    "携带材料": "需要携带",
    "fee": "费用",
    "price": "费用",
    "收费": "费用",
    "收费标准": "费用",
    "notes": "说明",
    "description": "说明",
    "备注": "说明",
    "详情": "说明",
}
NAME_LABEL = "服务名称"


class LoadError(Exception):
    """The file cannot be ingested; the message says why, in a few words."""


@dataclass
class LoadedDocument:
    path: Path
    title: str
    kind: DocKind
    text: str = ""  # regulation, markdown, prose
    entries: list[dict[str, str]] = field(default_factory=list)  # catalog: one dict per service
    community: str = ""  # set by the file itself (a JSON catalog's "community")
    warnings: list[str] = field(default_factory=list)


def load(path: Path, max_bytes: int = MAX_BYTES) -> LoadedDocument:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise LoadError(f"unsupported file type {suffix or '(none)'}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LoadError(f"cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise LoadError("empty file")
    if size > max_bytes:
        raise LoadError(
            f"file too large ({size / 1048576:.1f} MB, the limit is {max_bytes / 1048576:.0f} MB)"
        )
    loader = _LOADERS[suffix]
    try:
        doc = loader(path)
    except LoadError:
        raise
    except Exception as e:  # a library's own error on a malformed file
        raise LoadError(f"cannot parse {suffix[1:].upper()}: {type(e).__name__}: {str(e)[:120]}") from None
    if doc.kind == "catalog":
        if not doc.entries:
            raise LoadError("no catalog entries found")
    elif not doc.text.strip():
        raise LoadError(
            "no text found (a scanned PDF needs OCR first)" if suffix == ".pdf" else "no text found"
        )
    return doc


# --- text formats -----------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "gb18030"):  # Chinese files from Windows are often GBK
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise LoadError("not UTF-8 or GB18030 text")


def guess_title(text: str, path: Path) -> str:
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        s = s.lstrip("#").strip()
        if 0 < len(s) <= 40 and not s.endswith(("。", "；", "：")) and not ARTICLE_RE.match(s):
            return clean_title(s)
        break
    return clean_title(path.stem)


def clean_title(title: str) -> str:
    """《中华人民共和国民法典（节选）第二编 物权》 -> 中华人民共和国民法典: the citation names the law itself."""
    t = re.split(r"[（(]节选[）)]", title)[0]
    t = re.sub(r"_节选.*$", "", t)
    return t.strip(" 《》") or title


def _kind_of(text: str, suffix: str) -> DocKind:
    articles = sum(1 for line in text.splitlines() if ARTICLE_RE.match(line))
    if articles >= 2:
        return "regulation"
    if suffix in (".md", ".markdown") or re.search(r"^#{1,6}\s", text, re.M):
        return "markdown"
    return "prose"


def _text_document(path: Path, text: str) -> LoadedDocument:
    text = text.replace("\r\n", "\n").replace("\u3000", " ")
    return LoadedDocument(
        path=path, title=guess_title(text, path), kind=_kind_of(text, path.suffix.lower()), text=text
    )


def load_text(path: Path) -> LoadedDocument:
    return _text_document(path, _read_text(path))


def load_pdf(path: Path) -> LoadedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise LoadError("encrypted PDF")
        pages = [p.extract_text() or "" for p in reader.pages]
    except PdfReadError as e:
        raise LoadError(f"broken PDF: {str(e)[:120]}") from None
    meta_title = (reader.metadata.title if reader.metadata else None) or ""
    doc = _text_document(path, "\n".join(pages))
    if meta_title and len(meta_title) <= 40:
        doc.title = clean_title(meta_title)
    return doc


def load_docx(path: Path) -> LoadedDocument:
    import docx  # python-docx

    d = docx.Document(str(path))
    lines: list[str] = []
    for p in d.paragraphs:
        t = p.text.strip()
        if not t:
            continue
        style = (p.style.name if p.style is not None else "") or ""
        m = re.match(r"Heading (\d)|标题 ?(\d)", style)
        if style == "Title":
            lines.append(f"# {t}")
        elif m:
            lines.append("#" * min(6, int(m.group(1) or m.group(2)) + 1) + " " + t)
        else:
            lines.append(t)
    entries: list[dict[str, str]] = []
    for table in d.tables:
        rows = [[c.text.strip() for c in r.cells] for r in table.rows]
        entries.extend(_rows_to_entries(rows))
    text = "\n\n".join(lines)
    if entries and len(text) < 200:  # a document that is mostly a table of services is a catalog
        return LoadedDocument(
            path=path,
            title=guess_title(text, path) if text else clean_title(path.stem),
            kind="catalog",
            entries=entries,
        )
    doc = _text_document(path, text)
    if entries:  # tables inside prose: keep them as text so nothing is lost
        doc.text += "\n\n" + "\n".join(_entry_text(e) for e in entries)
    return doc


def load_html(path: Path) -> LoadedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_read_text(path), "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "header", "noscript"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    lines: list[str] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr"]):
        t = el.get_text(" ", strip=True)
        if not t:
            continue
        if el.name and el.name[0] == "h" and el.name[1:].isdigit():
            lines.append("#" * int(el.name[1:]) + " " + t)
        else:
            lines.append(t)
    if title and (not lines or not lines[0].startswith("# ")):
        lines.insert(0, f"# {title}")
    return _text_document(path, "\n\n".join(lines))


# --- catalogs ---------------------------------------------------------------------------------------


def _label(key: str) -> str:
    k = key.strip()
    return FIELD_LABELS.get(k.lower(), FIELD_LABELS.get(k, k))


def _normalise_entry(raw: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw.items():
        if v is None or k is None:
            continue
        val = "、".join(str(x) for x in v) if isinstance(v, list) else str(v).strip()
        if val:
            out[_label(str(k))] = val
    if NAME_LABEL not in out and out:
        first = next(iter(out))  # the first column names the service when no column is called so
        out = {NAME_LABEL: out[first], **{k: v for k, v in out.items() if k != first}}
    return out


def _rows_to_entries(rows: list[list[str]]) -> list[dict[str, str]]:
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        return []
    header = [h.strip() or f"列{i + 1}" for i, h in enumerate(rows[0])]
    entries = [_normalise_entry(dict(zip(header, r, strict=False))) for r in rows[1:]]
    return [e for e in entries if e.get(NAME_LABEL)]


def _entry_text(e: dict[str, str]) -> str:
    name = e.get(NAME_LABEL, "")
    rest = "；".join(f"{k}：{v}" for k, v in e.items() if k != NAME_LABEL)
    return f"{name}。{rest}" if rest else name


def load_csv(path: Path) -> LoadedDocument:
    text = _read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    rows = list(csv.reader(io.StringIO(text), dialect))
    return LoadedDocument(
        path=path, title=clean_title(path.stem), kind="catalog", entries=_rows_to_entries(rows)
    )


def load_xlsx(path: Path) -> LoadedDocument:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, data_only=True)  # merged cells need the full (not read-only) model
    except Exception as e:
        raise LoadError(f"not a readable XLSX workbook: {type(e).__name__}") from None
    entries: list[dict[str, str]] = []
    warnings: list[str] = []
    for ws in wb.worksheets:
        merged = list(ws.merged_cells.ranges)
        if merged:
            # A category or place cell merged over several rows applies to each of them: fill it down
            names = ", ".join(str(r) for r in merged[:3]) + (" ..." if len(merged) > 3 else "")
            warnings.append(
                f"sheet {ws.title!r}: {len(merged)} merged cell range(s) ({names}) filled with their value"
            )
            for rng in merged:
                value = ws.cell(rng.min_row, rng.min_col).value
                ws.unmerge_cells(str(rng))
                for row in ws.iter_rows(
                    min_row=rng.min_row, max_row=rng.max_row, min_col=rng.min_col, max_col=rng.max_col
                ):
                    for cell in row:
                        cell.value = value
        rows = [["" if v is None else str(v) for v in r] for r in ws.iter_rows(values_only=True)]
        entries.extend(_rows_to_entries(rows))
    wb.close()
    return LoadedDocument(
        path=path, title=clean_title(path.stem), kind="catalog", entries=entries, warnings=warnings
    )


def load_json(path: Path) -> LoadedDocument:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise LoadError(f"not valid JSON (line {e.lineno}: {e.msg})") from None
    title, community = clean_title(path.stem), ""
    items: Any = data
    if isinstance(data, dict):
        title = clean_title(str(data.get("title") or title))
        community = str(data.get("community") or "")
        items = next(
            (data[k] for k in ("services", "items", "entries", "data") if isinstance(data.get(k), list)), None
        )
        if items is None:
            raise LoadError("JSON catalog needs a list of services (or an object with a 'services' list)")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise LoadError("JSON catalog needs a list of objects, one per service")
    entries = [e for e in (_normalise_entry(i) for i in items) if e.get(NAME_LABEL)]
    return LoadedDocument(path=path, title=title, kind="catalog", entries=entries, community=community)


_LOADERS = {
    ".md": load_text,
    ".markdown": load_text,
    ".txt": load_text,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
    ".csv": load_csv,
    ".xlsx": load_xlsx,
    ".json": load_json,
}
