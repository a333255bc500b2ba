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

# Every parser is bounded in time and memory, whatever a file claims (docs/knowledge.md, "Limits"): a small file
# can still describe a huge document (a merged range over half a million cells, a million empty paragraphs, a
# zip that inflates a thousandfold). Past a limit the file is refused with the reason; the batch goes on.
MAX_CHARS = 1_000_000  # text of one document (~500 pages; ~2,000 chunks to embed)
MAX_PARAGRAPHS = 50_000  # DOCX paragraphs, empty ones included
MAX_CELLS = (
    1_000_000  # spreadsheet cells read (XLSX rows x columns, empty ones included; CSV fields; DOCX tables)
)
MAX_COLUMNS = 100  # XLSX columns read per sheet; a catalog has a dozen
MAX_MERGED = 10_000  # XLSX merged ranges per sheet
MAX_UNZIPPED = 200 * 1024 * 1024  # what a DOCX/XLSX may inflate to, all parts together
MAX_PAGES = 2_000  # PDF pages
MAX_MARKUP = 300_000  # HTML tags, JSON objects and arrays

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
        chars = sum(len(k) + len(v) for e in doc.entries for k, v in e.items())
        if chars > MAX_CHARS:
            raise LoadError(_too_many("characters of text", chars, MAX_CHARS))
    elif len(doc.text) > MAX_CHARS:
        raise LoadError(_too_many("characters of text", len(doc.text), MAX_CHARS))
    elif not doc.text.strip():
        raise LoadError(
            "no text found (a scanned PDF needs OCR first)" if suffix == ".pdf" else "no text found"
        )
    return doc


def _too_many(what: str, n: int, limit: int, more: bool = False) -> str:
    count = f"more than {limit:,}" if more else f"{n:,}"
    return f"too large to ingest: {count} {what} (the limit is {limit:,}); split the file"


def _check_unzipped(path: Path) -> None:
    """A DOCX/XLSX is a zip: refuse one that inflates past MAX_UNZIPPED (sizes from its directory; zipfile
    checks them while reading)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except zipfile.BadZipFile:
        raise LoadError(f"not a readable {path.suffix[1:].upper()} file (not a zip archive)") from None
    if total > MAX_UNZIPPED:
        raise LoadError(
            f"too large to ingest: it unpacks to {total / 1048576:.0f} MB "
            f"(the limit is {MAX_UNZIPPED / 1048576:.0f} MB)"
        )


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
        if len(reader.pages) > MAX_PAGES:
            raise LoadError(_too_many("pages", len(reader.pages), MAX_PAGES))
        pages: list[str] = []
        chars = 0
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            chars += len(pages[-1])
            if chars > MAX_CHARS:
                raise LoadError(_too_many("characters of text", chars, MAX_CHARS, more=True))
    except PdfReadError as e:
        raise LoadError(f"broken PDF: {str(e)[:120]}") from None
    meta_title = (reader.metadata.title if reader.metadata else None) or ""
    doc = _text_document(path, "\n".join(pages))
    if meta_title and len(meta_title) <= 40:
        doc.title = clean_title(meta_title)
    return doc


def _scan_docx(path: Path) -> None:
    """Count the body's paragraphs, table cells and characters in one streaming pass, stopping at the first
    limit passed: python-docx builds every paragraph in memory (a million empty ones: 31 s, 280 MB)."""
    import zipfile
    from xml.etree.ElementTree import iterparse

    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    paragraphs = cells = chars = 0
    with zipfile.ZipFile(path) as z:
        if "word/document.xml" not in z.namelist():
            raise LoadError("not a Word document (no word/document.xml)")
        with z.open("word/document.xml") as f:
            for _, el in iterparse(f, events=("end",)):
                if el.tag == f"{w}t":
                    chars += len(el.text or "")
                    if chars > MAX_CHARS:
                        raise LoadError(_too_many("characters of text", chars, MAX_CHARS, more=True))
                elif el.tag == f"{w}p":
                    paragraphs += 1
                    if paragraphs > MAX_PARAGRAPHS:
                        raise LoadError(_too_many("paragraphs", paragraphs, MAX_PARAGRAPHS, more=True))
                    el.clear()
                elif el.tag == f"{w}tc":
                    cells += 1
                    if cells > MAX_CELLS:
                        raise LoadError(_too_many("table cells", cells, MAX_CELLS, more=True))
                    el.clear()


def load_docx(path: Path) -> LoadedDocument:
    import docx  # python-docx

    _check_unzipped(path)
    _scan_docx(path)
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

    text = _read_text(path)
    tags = text.count("<")
    if tags > MAX_MARKUP:
        raise LoadError(_too_many("HTML tags", tags, MAX_MARKUP))
    soup = BeautifulSoup(text, "html.parser")
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
    rows: list[list[str]] = []
    cells = 0
    for row in csv.reader(io.StringIO(text), dialect):
        cells += len(row)
        if cells > MAX_CELLS:
            raise LoadError(_too_many("cells", cells, MAX_CELLS, more=True))
        rows.append(row)
    return LoadedDocument(
        path=path, title=clean_title(path.stem), kind="catalog", entries=_rows_to_entries(rows)
    )


def _merged_ranges(path: Path, part: str) -> list[tuple[int, int, int, int]]:
    """(min_col, min_row, max_col, max_row) of each merged range of a sheet, read from its XML in a streaming
    pass (openpyxl's full model creates an object for every merged cell: 9 s for A3:AX10002, and filling them
    took 400 s)."""
    import zipfile
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils.cell import range_boundaries

    found: list[tuple[int, int, int, int]] = []
    with zipfile.ZipFile(path) as z, z.open(part) as f:
        for _, el in iterparse(f, events=("end",)):
            if el.tag.endswith("}mergeCell"):
                try:
                    bounds = range_boundaries(el.get("ref", ""))
                except (TypeError, ValueError):
                    continue
                if None not in bounds:
                    found.append(tuple(int(b) for b in bounds))  # type: ignore[arg-type]
                if len(found) > MAX_MERGED:
                    raise LoadError(
                        _too_many("merged cell ranges in a sheet", len(found), MAX_MERGED, more=True)
                    )
            el.clear()
    return found


def load_xlsx(path: Path) -> LoadedDocument:
    """Each sheet read as a stream (openpyxl's read-only mode), at most MAX_COLUMNS columns and MAX_CELLS cells
    in all. A category or place cell merged over several rows applies to each of them: the merged value is
    filled in, within the cells that hold data (a range reaching past them adds nothing but empty rows)."""
    import openpyxl

    _check_unzipped(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise LoadError(f"not a readable XLSX workbook: {type(e).__name__}") from None
    entries: list[dict[str, str]] = []
    warnings: list[str] = []
    cells = 0
    try:
        for ws in wb.worksheets:
            width = min(int(getattr(ws, "max_column", None) or MAX_COLUMNS), MAX_COLUMNS)
            rows: list[list[str]] = []
            last_row = last_col = 0
            for values in ws.iter_rows(max_col=width, values_only=True):
                cells += max(width, len(values))
                if cells > MAX_CELLS:
                    raise LoadError(_too_many("cells", cells, MAX_CELLS, more=True))
                row = ["" if v is None else str(v) for v in values]
                rows.append(row)
                filled = [i for i, v in enumerate(row) if v.strip()]
                if filled:
                    last_row, last_col = len(rows), max(last_col, filled[-1] + 1)
            del rows[last_row:]  # trailing empty rows, however many the sheet claims
            part = getattr(ws, "_worksheet_path", "")
            merged = _merged_ranges(path, part) if part else []
            if merged:
                names = ", ".join(_range_name(r) for r in merged[:3]) + (" ..." if len(merged) > 3 else "")
                warnings.append(
                    f"sheet {ws.title!r}: {len(merged)} merged cell range(s) ({names}) filled with their value"
                )
                for min_col, min_row, max_col, max_row in merged:
                    if min_row > len(rows) or min_col > last_col:
                        continue
                    value = rows[min_row - 1][min_col - 1] if min_col <= len(rows[min_row - 1]) else ""
                    for r in range(min_row - 1, min(max_row, len(rows))):
                        row = rows[r]
                        row.extend([""] * (min(max_col, last_col) - len(row)))
                        for c in range(min_col - 1, min(max_col, last_col)):
                            row[c] = value
            entries.extend(_rows_to_entries(rows))
    finally:
        wb.close()
    return LoadedDocument(
        path=path, title=clean_title(path.stem), kind="catalog", entries=entries, warnings=warnings
    )


def _range_name(r: tuple[int, int, int, int]) -> str:
    from openpyxl.utils import get_column_letter

    min_col, min_row, max_col, max_row = r
    return f"{get_column_letter(min_col)}{min_row}:{get_column_letter(max_col)}{max_row}"


def load_json(path: Path) -> LoadedDocument:
    text = _read_text(path)
    nodes = text.count("{") + text.count("[")  # an upper bound on what json.loads would build
    if nodes > MAX_MARKUP:
        raise LoadError(_too_many("JSON objects and lists", nodes, MAX_MARKUP))
    try:
        data = json.loads(text)
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
