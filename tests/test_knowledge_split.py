"""Loaders and the Chinese-aware splitter: every format in, chunks that keep meaning and their place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowledge.loaders import LoadError, clean_title, load
from knowledge.splitter import sentences, split_document
from tests.knowledge_support import ROOT

SAMPLE = ROOT / "knowledge" / "sample"
REGULATION = """# 某某小区管理办法（节选）

## 第一章 总则

第一条 为了规范小区管理，制定本办法。

第二条 业主应当遵守管理规约。

### 第一节 车辆

第三条 电动自行车不得在楼道内停放或者充电。

违反前款规定的，物业服务企业应当劝阻。

## 第二章 附则

第四条 本办法自公布之日起施行。
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_regulation_splits_by_article_with_chapter_and_section(tmp_path: Path) -> None:
    doc = load(write(tmp_path, "管理办法.txt", REGULATION))
    assert doc.kind == "regulation"
    assert doc.title == "某某小区管理办法"  # （节选） is not part of the law's name
    chunks = split_document(doc)
    assert [c.locator for c in chunks] == ["第一条", "第二条", "第三条", "第四条"]
    third = chunks[2]
    assert third.context == "第一章 总则 第一节 车辆"
    assert "违反前款规定的" in third.text  # an article's second paragraph stays with it
    assert chunks[3].context == "第二章 附则"  # a new chapter drops the old section
    assert third.source == "管理办法.txt" and third.kind == "article"
    assert not third.embed_text.startswith("第三条")  # the article number says nothing about meaning


def test_bundled_regulations_keep_every_article() -> None:
    path = SAMPLE / "regulations" / "物业管理条例.txt"
    chunks = split_document(load(path))
    locators = {c.locator for c in chunks}
    assert len(locators) == 67 and "第四十二条" in locators
    assert all(c.title == "物业管理条例" for c in chunks)
    civil = split_document(load(SAMPLE / "regulations" / "民法典_物业服务合同_节选.txt"))
    assert civil[0].title == "中华人民共和国民法典" and civil[0].locator == "第九百三十七条"


def test_long_article_is_cut_at_paragraphs_and_keeps_its_locator(tmp_path: Path) -> None:
    long_para = "。".join(f"第{i}项内容说明物业服务的要求" for i in range(60)) + "。"
    text = "# 条例\n\n第一条 总则。\n\n第二条 " + long_para + "\n\n第三条 附则。\n"
    chunks = split_document(load(write(tmp_path, "长条例.txt", text)))
    parts = [c for c in chunks if c.locator == "第二条"]
    assert len(parts) >= 2 and all(len(c.text) <= 480 for c in parts)
    assert len({c.id for c in chunks}) == len(chunks)


def test_markdown_splits_by_heading(tmp_path: Path) -> None:
    md = "# 办事指南\n\n## 门禁卡补办\n\n带身份证到物业前台。\n\n## 装修申报\n\n先交押金。\n"
    chunks = split_document(load(write(tmp_path, "指南.md", md)))
    assert [(c.locator, c.text) for c in chunks] == [
        ("门禁卡补办", "带身份证到物业前台。"),
        ("装修申报", "先交押金。"),
    ]
    assert chunks[0].title == "办事指南"


def test_prose_splits_by_sentence_with_overlap(tmp_path: Path) -> None:
    sents = [f"这是关于社区服务的第{i}句话，内容比较长，用来测试按句切分的效果。" for i in range(20)]
    chunks = split_document(load(write(tmp_path, "说明.txt", "".join(sents))))
    assert len(chunks) > 1
    assert all(c.text.endswith("。") for c in chunks)  # never cut inside a sentence
    last_of_first = sentences(chunks[0].text)[-1]
    assert chunks[1].text.startswith(last_of_first)  # one sentence of overlap


def test_csv_catalog_gives_one_entry_per_service() -> None:
    doc = load(SAMPLE / "communities" / "示例社区" / "示例社区服务目录.csv")
    chunks = split_document(doc, community="示例社区")
    names = [c.locator for c in chunks]
    assert "助老食堂" in names and "四点半课堂" in names and "骑手驿站" in names
    canteen = chunks[names.index("助老食堂")]
    assert canteen.kind == "entry" and canteen.community == "示例社区"
    assert "开放时间：" in canteen.text and "联系电话：" in canteen.text


def test_json_catalog_with_english_keys(tmp_path: Path) -> None:
    data = {
        "title": "便民清单",
        "community": "某社区",
        "services": [{"name": "修车", "place": "南门", "hours": "周六", "phone": "123"}],
    }
    doc = load(write(tmp_path, "清单.json", json.dumps(data, ensure_ascii=False)))
    assert doc.kind == "catalog" and doc.community == "某社区" and doc.title == "便民清单"
    (chunk,) = split_document(doc)
    assert chunk.locator == "修车" and "地点：南门" in chunk.text and "开放时间：周六" in chunk.text


def test_xlsx_with_merged_cells_is_filled_and_reported(tmp_path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["类别", "服务名称", "地点"])
    ws.append(["一老一小", "助老食堂", "12号楼"])
    ws.append([None, "四点半课堂", "党群服务中心"])
    ws.merge_cells("A2:A3")
    path = tmp_path / "目录.xlsx"
    wb.save(path)
    doc = load(path)
    assert [e["服务名称"] for e in doc.entries] == ["助老食堂", "四点半课堂"]
    assert doc.entries[1]["类别"] == "一老一小"  # the merged value applies to every row it spans
    assert doc.warnings and "merged" in doc.warnings[0] and "A2:A3" in doc.warnings[0]


def test_docx_headings_become_sections(tmp_path: Path) -> None:
    import docx

    d = docx.Document()
    d.add_heading("社区须知", level=0)
    d.add_heading("垃圾投放", level=1)
    d.add_paragraph("每天早上7点到9点定时投放。")
    path = tmp_path / "须知.docx"
    d.save(str(path))
    chunks = split_document(load(path))
    assert chunks[0].title == "社区须知" and chunks[0].locator == "垃圾投放"
    assert "定时投放" in chunks[0].text


def test_html_keeps_headings_and_drops_scripts(tmp_path: Path) -> None:
    html = (
        "<html><head><title>停车须知</title><script>var x=1;</script></head><body>"
        "<h2>收费标准</h2><p>地面车位每月150元。</p></body></html>"
    )
    chunks = split_document(load(write(tmp_path, "停车.html", html)))
    assert chunks[0].title == "停车须知" and chunks[0].locator == "收费标准"
    assert "150元" in chunks[0].text and "var x" not in chunks[0].text


def _minimal_pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>stream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return out


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    path = tmp_path / "notice.pdf"
    path.write_bytes(_minimal_pdf("Parking fee is 150 yuan per month."))
    doc = load(path)
    assert "150 yuan" in doc.text


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("空.txt", b"", "empty file"),
        ("坏.pdf", b"%PDF-1.4\nthis is not really a pdf", "PDF"),
        ("坏.json", b"{not json", "not valid JSON"),
        ("坏.xlsx", b"PK\x03\x04 broken zip", "XLSX"),
        ("程序.exe", b"MZ", "unsupported file type"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load(path)


def test_too_large_file_is_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "大.txt"
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB without writing them
    with pytest.raises(LoadError, match="too large"):
        load(path)


def test_clean_title() -> None:
    assert clean_title("中华人民共和国民法典（节选）第二编 物权") == "中华人民共和国民法典"
    assert clean_title("北京市生活垃圾管理条例_节选") == "北京市生活垃圾管理条例"
