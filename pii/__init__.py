"""Personal data in residents' text: phone and ID numbers masked, e-mail addresses shortened, places coarsened.

One module, used wherever a resident's words are stored (inbound messages, reports, tickets, knowledge gaps),
repeated into a group, or served (the admin API, the public GeoReport GET). Staff-written text (notices, the
knowledge base, service hotlines in answers) is not passed through it: those numbers are meant to be read.

Numbers are found as *runs*: digit groups joined by short separators (space, dot, dash, brackets, full-width
forms), so "138.1234.5678", "138 1234 5678", "+86 138-1234-5678", "１３８１２３４５６７８", "(022)2345-6789" and
"110101 19900307 123X" are each one run. Inside a run the longest phone- or ID-like stretch is masked, and the
rest is kept: "2026-11-23", "3号楼2单元401", "#123", "1.5元/平方米" and "9:00-12:00" are never touched.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# --- numbers ------------------------------------------------------------------------------------------------

_SEP = " \u3000\u00a0\t.\-－—–·・()（）"
# a run: an optional + or opening bracket, digits, one to three separators between digit groups, an optional X
_RUN = re.compile(rf"[+＋(（]?\d(?:[{_SEP}]{{1,3}}\d|\d)*[XxＸｘ]?")
_GROUP = re.compile(r"\d+[XxＸｘ]?")
# after a run of this kind the number is an amount, a count or a date, not a phone number
_UNITS = tuple("元块角万亿千百平米㎡斤克吨升年月日天号次个人户楼层室栋幢%％度岁分秒份件台辆张瓶袋箱元") + (
    "公里",
    "公斤",
    "小时",
)
MAX_DIGITS = 19  # the longest number masked: an 18-digit ID, a 19-digit card
_NOT_BEFORE = ("#", "＃", "№", "No.", "NO.", "no.")  # ticket and order numbers: #12345678
_CN_NUMBER = re.compile(r"[零〇一二三四五六七八九幺]{7,}")
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)


def _ascii(s: str) -> str:
    return "".join(str(unicodedata.digit(c)) if c.isdigit() else "X" for c in s)


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    end: int
    digits: str
    kind: str  # mobile | landline | id | phone | hotline (kept as written)


def _is_date(d: str) -> bool:
    return bool(re.fullmatch(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])", d))


def _is_year(d: str) -> bool:
    return bool(re.fullmatch(r"(?:19|20)\d\d", d))


def _is_hhmm(d: str) -> bool:
    return len(d) == 4 and int(d[:2]) < 24 and int(d[2:]) < 60


def _kind(groups: list[str], plus: bool) -> str | None:
    """What the digit groups joined together are, or None when they are not personal data."""
    d = "".join(groups)
    has_x = d.endswith("X")
    digits = d[:-1] if has_x else d
    if not digits.isdigit():
        return None
    n = len(d)
    if not has_x:
        for prefix in ("", "86", "0086"):
            if d.startswith(prefix) and re.fullmatch(r"1[3-9]\d{9}", d[len(prefix) :]):
                return "mobile"
    if has_x:
        return "id" if n in (15, 18) else None
    if 15 <= n <= 19 and all(len(g) >= 3 for g in groups[:-1]):
        return "id"  # an ID number (15 or 18) or a bank card (16-19): shown the same way
    if plus and 7 <= n <= 15:
        return "phone"
    if re.fullmatch(r"0[1-9]\d{8,10}", d) and (len(groups) == 1 or len(groups[0]) in (3, 4)):
        return "landline"  # with its area code: 022-23456789, 0755 1234 5678
    if not 7 <= n <= 14:
        return None
    if n == 10 and d[:3] in ("400", "800"):
        return "hotline"  # a business number, published to be called: kept, and no part of it masked
    if len(groups) == 1:
        return None if _is_date(d) else "phone"
    if n > 12 or any(len(g) < 3 for g in groups):
        return None  # "2026-11-23", "1-2-3-4-5-6-7": groups of a date or a list
    if all(_is_year(g) for g in groups) or (len(groups) == 2 and all(_is_hhmm(g) for g in groups)):
        return None  # "2019-2023", "0800-1200"
    return "phone"


def _find(text: str) -> list[_Found]:
    found: list[_Found] = []
    for run in _RUN.finditer(text):
        raw = run.group(0)
        before = text[max(0, run.start() - 3) : run.start()]
        plus = raw[0] in "+＋"
        spans = [
            (m.start() + run.start(), m.end() + run.start(), _ascii(m.group(0))) for m in _GROUP.finditer(raw)
        ]
        after = text[run.end() : run.end() + 2]
        i = 0
        while i < len(spans):
            hit: tuple[int, str] | None = None
            # the longest stretch from i that is personal data; none is longer than 19 digits, so a run of
            # thousands of groups costs no more than a short one
            last, digits = i, 0
            while last < len(spans) and digits + len(spans[last][2]) <= MAX_DIGITS:
                digits += len(spans[last][2])
                last += 1
            for j in range(last, i, -1):
                groups = [g for _, _, g in spans[i:j]]
                kind = _kind(groups, plus and i == 0)
                if kind is None:
                    continue
                if kind == "phone":
                    ends_run = j == len(spans)
                    starts_run = i == 0
                    if (ends_run and after.startswith(_UNITS)) or (
                        starts_run and before.endswith(_NOT_BEFORE)
                    ):
                        continue
                hit = (j, kind)
                break
            if hit is None and last == i:  # one group longer than any number: whatever it hides, hide it
                hit = (i + 1, "phone")
            if hit is None:
                i += 1
                continue
            j, kind = hit
            start = run.start() if i == 0 else spans[i][0]  # with its + or opening bracket
            found.append(_Found(start, spans[j - 1][1], "".join(g for _, _, g in spans[i:j]), kind))
            i = j
    return found


def _masked(f: _Found) -> str:
    d = f.digits
    if f.kind == "mobile":
        d = d[-11:]
        return f"{d[:3]}****{d[-4:]}"
    if f.kind == "id":
        return d[:4] + "*" * (len(d) - 8) + d[-4:]
    if f.kind == "landline":
        area = d[:3] if d[1] in "12" else d[:4]  # 010 and 02x: three digits; elsewhere four
        return f"{area}-****{d[-4:]}"
    return f"{d[:3]}****{d[-4:]}" if len(d) >= 10 else "****" + d[-2:]


def mask_pii(text: str) -> str:
    """Mask phone numbers (mobile, landline, spaced or dotted, full-width, +86), ID and bank card numbers, and
    e-mail addresses: "138 1234 5678" -> "138****5678", "110101199003071234" -> "1101**********1234"."""
    if not text:
        return text
    out: list[str] = []
    pos = 0
    for f in _find(text):
        if f.kind == "hotline":
            continue
        out.append(text[pos : f.start])
        out.append(_masked(f))
        pos = f.end
    out.append(text[pos:])
    t = "".join(out)
    t = _CN_NUMBER.sub(lambda m: m.group(0)[:3] + "****" + m.group(0)[-2:], t)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", t)


def phone_numbers(text: str) -> list[str]:
    """The phone numbers in the text, digits only (for staff who call back, never for groups)."""
    return list(
        dict.fromkeys(
            f.digits[-11:] if f.kind == "mobile" else f.digits
            for f in _find(text)
            if f.kind not in ("id", "hotline")
        )
    )


# --- places -------------------------------------------------------------------------------------------------

_BUILDING = re.compile(r"(\d{1,4}|[一二三四五六七八九十两]{1,3})\s*(号楼|栋|幢|座|号院)")
_COMMON_SPOT = re.compile(
    r"东门|西门|南门|北门|正门|后门|大门|侧门|地下车库|车库|停车场|篮球场|健身区|垃圾站|垃圾房|快递柜|车棚|"
    r"充电桩|配电室|绿化带|花坛|儿童乐园|活动室|助老食堂|老年食堂|党群服务中心|居委会|物业办公室|门卫室|公厕|"
    r"公交站|菜市场|农贸市场|超市|幼儿园|小学|中学|公园"
)


def coarse_place(place: str, community: str = "") -> str:
    """A place at the community and building level, for the public: "示例社区 3号楼门口" -> "示例社区 3号楼";
    "刘阿姨家门口" -> the community alone. A shared spot ("南门", "地下车库") stands in for a building; nothing
    else of the place is kept (a resident's name, a unit, a floor, a door)."""
    text = unicodedata.normalize("NFKC", place or "").strip()
    if community and text.startswith(community):
        text = text[len(community) :].strip()
    b = _BUILDING.search(text)
    spot = f"{b.group(1)}{b.group(2)}" if b else ""
    if not spot:
        s = _COMMON_SPOT.search(text)
        spot = s.group(0) if s else ""
    return " ".join(x for x in (community, spot) if x)


COARSE_DECIMALS = 3  # about 100 metres: the block, not the doorstep


def coarse_coordinate(value: float | None) -> float | None:
    return None if value is None else round(value, COARSE_DECIMALS)
