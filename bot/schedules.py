"""When a notice goes out: Chinese time expressions as staff write them, and cron-like repeats.

    明天8:00 · 明天上午8点 · 后天9点半 · 11月25日 8:00 · 2026-11-25 08:00   -> once
    每天8:00 · 工作日7点半 · 每周一、周四 18:00 · 每月1日 9:00 · cron "0 8 * * 1-5"  -> a repeat (croniter)

Times are in the configured zone (Asia/Shanghai); the result is an aware datetime the store keeps in UTC.
`split_schedule` finds a schedule at the start of a notice's text only when it stands alone (followed by a
space or a comma), so "明天9点到12点停水" stays the notice's text rather than becoming its time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

_DAYPART = r"(?P<part>凌晨|早上|早晨|上午|中午|下午|傍晚|晚上)?"
_CLOCK = _DAYPART + r"\s*(?P<h>\d{1,2})\s*(?:[:：]\s*(?P<m>\d{2})|点(?:(?P<half>半)|(?P<pm>\d{1,2})分?)?|时)"
_RELATIVE_DAY = {"今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2}
_WEEKDAYS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "日": 0, "天": 0, "末": -1}

_ONCE = re.compile(
    r"(?:(?P<rel>今天|今日|明天|明日|后天)"
    r"|(?P<y>\d{4})\s*[-/.年]\s*(?P<mo>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*[日号]?"
    r"|(?P<mo2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*[日号])"
    r"\s*" + _CLOCK
)
_REPEAT = re.compile(
    r"(?:(?P<daily>每天|每日)"
    r"|(?P<workday>工作日|每个工作日)"
    r"|每(?:周|星期)(?P<wd>[一二三四五六日天末](?:\s*[、,，和]\s*(?:周|星期)?[一二三四五六日天])*)"
    r"|每月\s*(?P<md>\d{1,2})\s*[日号])"
    r"\s*" + _CLOCK.replace("?P<", "?P<r_")
)
_CRON = re.compile(
    r"cron\s*[:：]?\s*[\"'“”(（]?\s*(?P<expr>[0-9*/,\-]+(?:\s+[0-9A-Za-z*/,\-?]+){4})\s*[\"'“”)）]?", re.I
)
_LEAD = re.compile(r"\s*(?:定时|发送时间|时间)?\s*[:：]?\s*")
_AFTER = re.compile(r"(?:\s+|\s*[,，;；。]\s*|$)")


class ScheduleError(ValueError):
    """The time cannot be understood, or it is in the past. The message is for staff, in Chinese."""


@dataclass(frozen=True)
class Schedule:
    """Now, once at `at`, or a repeat (`cron`, first at `at`)."""

    at: datetime | None = None  # aware; None: at once
    cron: str = ""
    label: str = "立即发送"

    @property
    def is_repeat(self) -> bool:
        return bool(self.cron)

    def first_run(self, now: datetime) -> datetime:
        return self.at or now


def _hour(part: str | None, h: int) -> int:
    if part in ("下午", "傍晚", "晚上") and h < 12:
        return h + 12
    if part == "中午" and h < 6:
        return h + 12
    return h


def _clock(m: re.Match[str], prefix: str = "") -> tuple[int, int]:
    def g(name: str) -> str | None:
        return m.group(prefix + name)

    h = _hour(g("part"), int(g("h") or 0))
    minute = 30 if g("half") else int(g("m") or g("pm") or 0)
    if not (0 <= h <= 23 and 0 <= minute <= 59):
        raise ScheduleError(f"时间“{m.group(0).strip()}”不对，请写成如“明天8:00”的形式。")
    return h, minute


def next_cron(expr: str, after: datetime, tz: ZoneInfo) -> datetime:
    """The first time the cron expression fires strictly after `after`, in UTC."""
    it = croniter(expr, after.astimezone(tz))
    nxt = it.get_next(datetime)
    return nxt.astimezone(UTC)


def _label(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def parse_schedule(text: str, now: datetime, tz: ZoneInfo) -> tuple[Schedule, int] | None:
    """A schedule at the very start of `text`: (schedule, characters used), or None if there is none."""
    local_now = now.astimezone(tz)
    if m := _ONCE.match(text):
        h, minute = _clock(m)
        if m.group("rel"):
            day = local_now.date() + timedelta(days=_RELATIVE_DAY[m.group("rel")])
        else:
            year = int(m.group("y")) if m.group("y") else local_now.year
            month = int(m.group("mo") or m.group("mo2"))
            dom = int(m.group("d") or m.group("d2"))
            try:
                day = date(year, month, dom)
            except ValueError:
                raise ScheduleError(f"日期“{m.group(0).strip()}”不存在，请检查。") from None
            if not m.group("y") and datetime(day.year, day.month, day.day, h, minute, tzinfo=tz) < local_now:
                day = date(year + 1, month, dom)  # "1月5日" said in December means next year
        at = datetime(day.year, day.month, day.day, h, minute, tzinfo=tz)
        if at <= local_now:
            raise ScheduleError(
                f"定时“{m.group(0).strip()}”已经过去了，请换一个以后的时间，或去掉时间立即发送。"
            )
        return Schedule(at=at.astimezone(UTC), label=_label(at, tz)), m.end()
    if m := _REPEAT.match(text):
        h, minute = _clock(m, "r_")
        if m.group("daily"):
            cron, what = f"{minute} {h} * * *", "每天"
        elif m.group("workday"):
            cron, what = f"{minute} {h} * * 1-5", "工作日"
        elif m.group("md"):
            dom = int(m.group("md"))
            if not 1 <= dom <= 31:
                raise ScheduleError(f"“{m.group(0).strip()}”里的日期不对。")
            cron, what = f"{minute} {h} {dom} * *", f"每月{dom}日"
        else:
            days: list[int] = []
            for ch in re.findall(r"[一二三四五六日天末]", m.group("wd")):
                days.extend([6, 0] if _WEEKDAYS[ch] == -1 else [_WEEKDAYS[ch]])
            uniq = sorted(set(days))
            cron = f"{minute} {h} * * {','.join(str(d) for d in uniq)}"
            what = "每周" + "、".join("日一二三四五六"[d] for d in uniq)
        first = next_cron(cron, now, tz)
        return Schedule(at=first, cron=cron, label=f"{what} {h:02d}:{minute:02d}"), m.end()
    if m := _CRON.match(text):
        expr = " ".join(m.group("expr").split())
        if not croniter.is_valid(expr):
            raise ScheduleError(f"重复规则“{expr}”看不懂，请用五段式 cron，如 “0 8 * * 1-5”（工作日8点）。")
        try:
            first = next_cron(expr, now, tz)
        except (ValueError, KeyError, OverflowError):
            raise ScheduleError(f"重复规则“{expr}”不会触发，请检查。") from None
        return Schedule(at=first, cron=expr, label=f"按规则 {expr}"), m.end()
    return None


def split_schedule(text: str, now: datetime, tz: ZoneInfo) -> tuple[Schedule, str]:
    """(schedule, the rest of the text). With no schedule at the start, (Schedule() for now, text)."""
    lead = _LEAD.match(text)
    explicit = bool(lead and lead.group(0).strip())
    start = lead.end() if lead else 0
    found = parse_schedule(text[start:], now, tz)
    if found is None:
        if explicit and text[:start].strip(" :：") in ("定时", "发送时间"):
            raise ScheduleError("“定时”后面的时间看不懂，请写成如“定时 明天8:00”或“每天8:00”。")
        return Schedule(), text
    schedule, used = found
    after = _AFTER.match(text, start + used)
    if after is None:  # the time runs on into the text: "明天9点到12点停水" is the notice, not its time
        return Schedule(), text
    return schedule, text[after.end() :].strip()


def parse_when(value: str, now: datetime, tz: ZoneInfo) -> Schedule:
    """A whole string that is a schedule (the admin API's `schedule` field); ISO 8601 is accepted too."""
    v = value.strip()
    if not v or v in ("立即", "现在", "now"):
        return Schedule()
    try:
        iso = datetime.fromisoformat(v)
    except ValueError:
        iso = None
    if iso is not None:
        at = iso if iso.tzinfo else iso.replace(tzinfo=tz)
        if at <= now:
            raise ScheduleError(f"定时“{value}”已经过去了。")
        return Schedule(at=at.astimezone(UTC), label=_label(at, tz))
    found = parse_schedule(v, now, tz)
    if found is None or v[found[1] :].strip():
        raise ScheduleError(
            f"时间“{value}”看不懂，请写成如“明天8:00”“2026-11-25 08:00”“每天8:00”或 cron “0 8 * * *”。"
        )
    return found[0]
