"""Extraction from one group message: the place as written, urgency, a clean description (phone and ID
numbers masked by bot/pii.py, the one place that masks personal data).

Pure functions over text (no model): the trained classifier (handlers/classifier.py) decides intent and
service; these rules find the spans residents write the same way everywhere ("3号楼门口", "焕玉里2号门").
"""

from __future__ import annotations

import re

from bot.pii import mask_pii

# --- normalisation ------------------------------------------------------------------------------------

_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f900-\U0001f9ff\u2b50\u2b55\u231a-\u23ff\ufe0f\u200d]+"
)
_WECHAT_EMOTE = re.compile(r"\[[\u4e00-\u9fa5A-Za-z]{1,6}\]")  # [捂脸] [旺柴] [强]
_AT = re.compile(r"@\S+[\s\u2005]*")


_HALF_WIDTH = {
    c: c - 0xFEE0 for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]
}
_HALF_WIDTH[0x3000] = 0x20


def normalise(text: str) -> str:
    """Full-width letters and digits to half-width (Chinese punctuation kept), emoji and WeChat emotes removed, whitespace collapsed."""
    t = text.translate(_HALF_WIDTH)
    t = _WECHAT_EMOTE.sub(" ", t)
    t = _EMOJI.sub(" ", t)
    return re.sub(r"\s+", " ", t).strip()


_CN_DIGITS = {
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}


def cn_number(s: str) -> str:
    """三 -> 3, 十二 -> 12, 二十三 -> 23; digits pass through (for comparing places)."""
    if s.isdigit():
        return str(int(s))
    if "十" in s:
        head, _, tail = s.partition("十")
        tens = _CN_DIGITS.get(head, 1) if head else 1
        ones = _CN_DIGITS.get(tail, 0) if tail else 0
        return str(tens * 10 + ones)
    if all(c in _CN_DIGITS for c in s):
        return "".join(str(_CN_DIGITS[c]) for c in s)
    return s


# --- places -------------------------------------------------------------------------------------------

_NUM = r"(?:\d{1,4}|[一二三四五六七八九十两]{1,3})"
_UNIT = r"(?:号楼|号院|号门|号口|号线|栋|幢|座|单元|层|楼|号|期|区|排|门)"
_NAME_SUFFIX = (
    r"(?:小区|社区|花园|家园|公寓|大厦|广场|菜市场|农贸市场|市场|超市|公园|小学|中学|幼儿园|医院|卫生站|"
    r"大街|大道|新村|新城|路(?![灯面牙沿])|街(?![道灯])|巷|胡同|里(?![面头边])|苑|园|院(?!子)|庄|村|湾|府|城|郡|居)"
)
_SPOT = (
    r"(?:东门|西门|南门|北门|正门|后门|大门|侧门|小区门口|小区大门|地下车库|地库|车库|停车场|篮球场|羽毛球场|"
    r"健身区|健身器材|垃圾站|垃圾房|垃圾桶|垃圾箱|快递柜|丰巢|车棚|自行车棚|电动车棚|充电桩|配电室|配电箱|"
    r"绿化带|花坛|儿童乐园|游乐场|滑梯|活动室|助老食堂|老年食堂|党群服务中心|居委会|物业办公室|门卫室|岗亭|"
    r"公厕|公共厕所|化粪池|水泵房|锅炉房|公交站|站台|天桥|地下通道|消防通道|楼道|楼梯间|电梯间|楼顶|天台)"
)
_POS = (
    r"(?:门口|大门口|楼下|楼上|楼道里|楼道|楼梯间|楼梯口|电梯口|电梯里|电梯间|旁边|附近|对面|东侧|西侧|南侧|北侧|"
    r"东边|西边|南边|北边|入口|出口|拐角|拐弯|路口|十字路口|里面|后面|前面|边上|底下|门前|后头|一楼|顶楼|天台|外面|"
    r"那块|那边|这边|跟前|中间|转角)"
)
_PLACE = re.compile(
    rf"(?:(?P<name>[\u4e00-\u9fa5A-Za-z]{{1,5}}?{_NAME_SUFFIX}(?:小区|社区)?)?"
    rf"(?P<units>(?:{_NUM}{_UNIT}){{1,4}})(?P<spot1>{_SPOT})?(?P<pos1>{_POS})?)"
    rf"|(?:(?P<name2>[\u4e00-\u9fa5A-Za-z]{{1,5}}?{_NAME_SUFFIX}(?:小区|社区)?)(?P<spot2>{_SPOT})?(?P<pos2>{_POS})?)"
    rf"|(?:(?P<spot3>{_SPOT})(?P<pos3>{_POS})?)"
)
# characters that end a preceding phrase and never start a place name
_BOUNDARY = set(
    "的在了到去从是有和跟把被给说看我你他她它们咱俺这那哪个啊呀吧呢吗嘛哦喂嗯上下，。！？、 ,.!?:：；;天晚早昨今明刚都也还就又"
)
_NOT_PLACES = {
    "这里",
    "那里",
    "哪里",
    "家里",
    "心里",
    "夜里",
    "屋里",
    "城里",
    "村里",
    "半夜里",
    "公里",
    "千里",
    "一路",
    "走路",
    "马路上",
    "一个",
    "楼",
    "号",
    "区",
    "层",
    "门",
    "路",
    "里",
    "院",
    "园",
    "城",
    "村",
    "居",
    "一直在路",
    "小区",
    "社区",
    "医院",
    "公园",
    "超市",
    "市场",
    "居然",
    "一层",
    "二楼",
    "一楼",
    "两栋",
    "几栋",
    "几号楼",
}
_PRONOUN = re.compile(
    r"^(?:我们|咱们|你们|他们|我家|咱家|俺们|俺家|这个|那个|这边|那边|就是|就在|在|到|去|从|咱|俺|本)+"
)


def _trim_name(name: str) -> str:
    """Cut a matched place name at the last boundary character before its suffix."""
    name = _PRONOUN.sub("", name)
    for i in range(len(name) - 2, -1, -1):
        if name[i] in _BOUNDARY:
            return name[i + 1 :]
    return name


def extract_place(text: str) -> str | None:
    """The place named in the message, as written: '3号楼门口', '焕玉里2号门', '宜景菜市场门口'."""
    t = normalise(_AT.sub("", text))
    best: tuple[int, str] | None = None
    for m in _PLACE.finditer(t):
        raw = m.group(0)
        name = m.group("name") or m.group("name2")
        if name:
            trimmed = _trim_name(name)
            raw = raw.replace(name, trimmed, 1)
            name = trimmed
        if not raw or raw in _NOT_PLACES:
            continue
        bare = m.group("units") is None and m.group("spot2") is None and m.group("pos2") is None
        if bare and name is not None and (len(name) < 3 or name in _NOT_PLACES):
            continue  # a bare name must look like a proper place name (2+ characters before the suffix)
        if m.group("units"):
            u = m.group("units")
            if re.fullmatch(rf"{_NUM}(?:层|楼|号|区|期|门)", u) and not (
                name or m.group("spot1") or m.group("pos1")
            ):
                continue  # "3楼" / "5号" / "二期" alone is too vague to be a place (and often a time or floor)
        score = len(raw) + (4 if m.group("units") else 0)
        if best is None or score > best[0]:
            best = (score, raw)
    return best[1] if best else None


def place_key(place: str) -> str:
    """A comparable form of a place: digits normalised, position words dropped ('三号楼门口' -> '3号楼')."""
    t = normalise(place).replace(" ", "")
    t = re.sub(
        r"[一二三四五六七八九十两]{1,3}(?=号|栋|幢|单元|层|座|期|区)", lambda m: cn_number(m.group(0)), t
    )
    t = re.sub(rf"{_POS}$", "", t)
    t = t.replace("栋", "号楼").replace("幢", "号楼").replace("座", "号楼")
    t = re.sub(r"(\d+)楼(?=\d|$)", r"\1号楼", t)
    return t


# synonyms of a position, so "门前" and "门口" name the same spot and "东侧" and "西边" do not
_SAME_POSITION = {
    "大门口": "门口",
    "门前": "门口",
    "东边": "东侧",
    "西边": "西侧",
    "南边": "南侧",
    "北边": "北侧",
}


def place_position(place: str) -> str:
    """The position word that ends a place ('3号楼门口' -> '门口'), in a canonical form; '' if none."""
    m = re.search(rf"{_POS}$", normalise(place).replace(" ", ""))
    return _SAME_POSITION.get(m.group(0), m.group(0)) if m else ""


# --- urgency ------------------------------------------------------------------------------------------

_URGENT = re.compile(
    r"着火|起火|失火|火灾|冒烟|冒黑烟|烧起来|烧着了|火苗|明火|燃气味|煤气味|天然气味|液化气味|漏气|燃气泄漏|煤气泄漏|"
    r"闻到.{0,4}(?:燃气|煤气|天然气)|电线(?:裸露|露出|露在|耷拉|掉下来|断了|垂下来|拖地)|裸露的电线|漏电|触电|电着|"
    r"冒火花|打火花|火花|井盖(?:没了|丢了|不见了|被偷|掀开|翻了|翻过来|塌了|掉下去|被撬|开着|敞着|碎了)|没有井盖|没盖井盖|"
    r"井口敞|掉井里|掉进去|路面塌陷|地面塌陷|塌了个大坑|塌方|水淹|被淹|淹了|漫进|倒灌|水漫|积水.{0,6}(?:膝盖|腰|很深|半米)|"
    r"困在电梯|困电梯|电梯(?:困人|关人|里有人|里面有人)|关在电梯|有人受伤|受伤了|流血|摇摇欲坠|要掉下来|快掉下来|"
    r"砸到人|砸伤|砸下来|坠落|掉下来.{0,4}(?:砸|人)|高空抛物|扔下来|救命|快来人|要倒了|咬伤|被狗咬|咬人了"
)


def urgency_of(text: str) -> str:
    """'urgent' when the message describes danger to people now (fire, gas, exposed wires, open manhole,
    flooding, someone trapped or hurt); otherwise 'normal'."""
    return "urgent" if _URGENT.search(normalise(text)) else "normal"


# --- description --------------------------------------------------------------------------------------

_LEAD = re.compile(
    r"^(?:(?:(?:大家好|各位邻居|各位|邻居们|兄弟们|姐妹们|家人们|师傅|您好|你好|小门|家门口助手|家门口|管家|物业|网格员|"
    r"报修|投诉|反映一下|反映个事|反映个问题|反映)[\s,，:：。!！~～]+)|(?:那个|就是说|就是|嗯|呃|额|哎|唉|诶|喂|麻烦|"
    r"请问|我要报修|我要投诉|我要反映)[\s,，:：。!！~～]*)+"
)
_TRAIL = re.compile(
    r"(?:[\s,，。!！~～]*(?:谢谢|谢谢啦|多谢|辛苦了|辛苦|麻烦了|拜托了|求助|在线等|急急急|急)+)+[\s,，。!！~～]*$"
)


def clean_description(text: str, limit: int = 200) -> str:
    """What goes into the ticket: no @mentions, greetings, emoji or thanks; PII masked; at most `limit` chars."""
    t = normalise(_AT.sub("", text))
    t = _LEAD.sub("", t)
    t = _TRAIL.sub("", t)
    t = re.sub(r"([!！?？。，,~～])\1+", r"\1", t).strip(" ,，")
    t = mask_pii(t) or mask_pii(normalise(text))
    return t if len(t) <= limit else t[: limit - 1] + "…"


def short_title(description: str, limit: int = 20) -> str:
    """The ticket as named in group messages: '3号楼门口井盖松动'."""
    parts = [p.strip() for p in re.split(r"[。！!？?\n，,；;]", description) if p.strip()]
    t = parts[0] if parts else description.strip()
    for p in parts[1:]:  # a very short first clause ("快来人") needs the next one
        if len(t) >= 6:
            break
        t = f"{t}，{p}"
    return t if len(t) <= limit else t[: limit - 1] + "…"
