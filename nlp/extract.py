"""Extraction from one group message: the place as written, urgency, a clean description (phone and ID
numbers masked by pii/__init__.py, the one place that masks personal data).

Pure functions over text (no model): the trained classifier (nlp/classifier.py) decides intent and
service; these rules find the spans residents write the same way everywhere ("3号楼门口", "焕玉里2号门").
"""

from __future__ import annotations

import re

from pii import mask_pii

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
_UNIT = r"(?:号楼|号院|号门|号口|号线|栋|幢|座|单元|层|楼(?![道梯顶])|号|期|区|排|门)"
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
# a flat number after a building or entrance ("2单元401", "5栋302室"): kept, it is where the worker goes
_ROOM = r"\d{3,4}(?:室|户|号房|房)?(?![\d号栋层]|楼(?![道梯]))"
_PLACE = re.compile(
    rf"(?:(?P<name>[\u4e00-\u9fa5A-Za-z]{{1,5}}?{_NAME_SUFFIX}(?:小区|社区)?)?"
    rf"(?P<units>(?:{_NUM}{_UNIT}){{1,4}}(?:{_ROOM})?)(?P<spot1>{_SPOT})?(?P<pos1>{_POS})?)"
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
# Danger to people now, as concepts rather than phrases: a *thing* (a lift, a manhole cover, a wire, a tree)
# near a *state* that makes it dangerous (someone inside, gone, exposed, falling), or a danger word that needs no
# thing (着火, 燃气味, 塌陷, 被困). Each concept is a small vocabulary, so a new phrasing of a known danger ("电线破皮
# 露铜", "箅子被人偷了", "电梯停在半层里面有人") is caught without a rule for that message. A match that is only
# feared ("万一触电", "担心哪天掉下来") or already over ("已经修好") does not count.

_NEAR = 14  # characters between a thing and its state

_THING_STATE: list[tuple[str, str, str]] = [
    (
        "trapped",
        r"电梯|轿厢|货梯|客梯",
        r"困|关在|关住|被关|关着|出不来|夹住|夹到|里面有人|里边有人|里面好像有人|里面还有|里面有[个位]|还在里面|有人在里|我在里|孩子在里"
        r"|卡在[^，。！？,!?]{0,8}(?:之间|中间)|停在[^，。！？,!?]{0,8}(?:之间|中间)"
        r"|同乘|坠|掉了?[一两三四五六七八九十\d几]+层|往下掉|往下冲|下滑|滑到|直接掉|急停|失控",
    ),
    (
        "open_cover",
        r"井盖|窨井|井口|马葫芦|古力盖|篦子|箅子|盖板|雨水口|下水道口|检查井|污水井|排水井|阴井|化粪池|粪池|沼气池|井圈|井座",
        r"没了|不见|丢|被偷|被盗|被撬|缺失|失踪|整走|掀|翻|塌|碎|断|掉下|掉进|掉入|敞|开着|窟窿|大洞|黑洞|露出|少了|"
        r"踩空|栽|缺了|没有盖|没盖|破损|损坏|坏了|残缺|不全|缺损|缺角|破洞|破了|裂开|碎裂|无盖|揭开|塌陷|缝隙",
    ),
    (
        "live_wire",
        r"电线|电缆|线缆|管线|高压线|电源线|线头|电表箱|配电箱|配电柜|电柜|电箱",
        r"裸露|露在|露出|露铜|破皮|断了|断裂|折断|掉在|掉下|垂|耷拉|拖地|暴露|冒火|打火|火花|火星|冒烟|焦糊|漏电|"
        r"带电|摇摆|随风|铺放|铺在|开裂|噼啪|噼里啪啦",
    ),
    (
        "falling",
        r"树|树枝|树干|枝杈|墙|瓷砖|水泥|墙皮|墙砖|砖|玻璃|瓶|花盆|外机|空调|广告牌|招牌|装饰|窗|脚手架|围墙|围挡|"
        r"东西|杂物",
        r"倒了|倒下|倒伏|刮倒|被风|吹断|折断|断了|断落|砸|掉下|掉落|坠落|坠下|脱落|落下|摇摇欲坠|快倒|要倒|"
        r"歪着|倾斜|挂在半空|斜挂|悬在半空|吊在半空|晃得|往下掉",
    ),
    # a concept's head character with the thing it happens to: 塌/垮/坍/陷/沉 of a road, a car, a ceiling, a wall
    (
        "collapse",
        r"路面|路基|地面|地砖|人行道|马路|道路|车子|车轮|前轮|后轮|轮胎|楼板|天花板|吊顶|顶棚|屋顶|房顶|房子|围墙|墙体|阳台|台阶|桥面",
        r"塌(?!实)|垮|坍|陷(?!入困|害)|下沉|沉下|往下沉|悬空|掏空|空了",
    ),
    # a tree or a pole leaning on, or pressing on, a roof, a car, a wire or a house
    (
        "falling",
        r"大树|树枝|树干|枝杈|枝干|树冠|树|电线杆|电杆|线杆|灯杆|广告牌|招牌",
        r"压在|压着|压到|压住|压塌|靠在|倚在|倚靠|搭在|倒在|倒向|倾倒|歪倒|悬在|架在",
    ),
    # water in or on the electrics: a meter box that leaks, a socket that took water, a wire carrying water
    (
        "wet_electrics",
        r"电表箱|电表|配电箱|配电柜|配电房|配电室|电箱|电柜|电闸|插座|插排|插线板|电线|电缆|电源线|变压器|线路",
        r"漏水|进水|渗水|积水|带着水|带水|泡水|泡在水|浸水|浸泡|淋湿|被雨淋|被淋|水滴|滴水|滴着水|湿透|有水|被水",
    ),
    (
        "hole",
        r"坑|洞|窟窿|缺口",
        r"差点|夺命|掉进|陷进|栽进|栽倒|踩空|摔进|吞",
    ),
    (
        "not_seen",
        r"独居|一个人住|空巢|孤寡|老人|老大爷|大爷|老奶奶|老伯|老太",
        r"[两三四五六七八九十\d几多]+天(没|不|未)|一周|好几天|多日|这两天|连续.{0,4}天|没见|不见人|没出门|没开门|"
        r"没露面|没动静|联系不上|没人应|无人应|没有动静|敲门.{0,4}(?:没|不应|无)|不应|没人开|反锁|进不去|没回来|打不通|找不到|"
        r"走失|失联|摔倒.{0,6}起不来|起不来",
    ),
]
_DANGER_WORDS: list[tuple[str, str]] = [
    (
        "fire",
        r"着火|(?<!引)起火|失火|火灾|火苗|明火|火光|烧起来|烧着了|烧了起来|着起来|冒烟|浓烟|黑烟|烟雾|烟[好很特别太]*大"
        r"|焦糊味|烧焦|冒火星|冒火花|打火花|火花四溅|爆炸|炸了|火情",
    ),
    (
        "gas",
        r"(?:煤气|燃气|天然气|液化气|瓦斯)[^，。！？,!?]{0,4}(?:味|泄漏|泄露|漏)|漏气|臭鸡蛋味|闻到.{0,6}(?:煤气|燃气|天然气)",
    ),
    ("shock", r"漏电|触电|电到人|麻电|被电(?![动瓶车])"),  # not "被电动车堵住"
    (
        "collapse",
        r"塌陷|塌了|坍塌|塌方|塌下|地陷|陷下去|下陷|路面下沉|塌个|塌出|空洞|冲空|掏空|要塌|倒塌"
        r"|裂缝[^，。！？,!?]{0,6}(?:越来越|变大|倾斜)|不敢住|垮塌|垮了|坍了|塌掉|塌落|(?:陷|沉)下去|陷进去|陷进了",
    ),
    (
        "flood",
        r"(?:水管|水箱|管道|管子|水表)[^，。！？,!?]{0,3}(?:爆|裂开)|爆管|被淹|淹了|淹没|水淹|进水了|倒灌|灌进|灌满|灌了|漫进|水漫|(?:水|雨水|洪水|污水)[^，。！？,!?]{0,4}冲进|涨水|(?:水|雨)[^，。！？,!?]{0,8}(?:往里灌|往屋里灌|往家里灌|灌进来)|(?:地库|车库|地下室)[^，。！？,!?]{0,6}(?:进水|漫|灌|淹)|没过.{0,3}(?:膝|腰|车顶|车身)"
        r"|(?:积水|水)[^，。！？,!?]{0,6}(?:膝盖|到腰|齐腰|半米|一米|[\d一二三四五]米)",
    ),
    (
        "hurt",
        r"咬伤|(?:狗|犬)[^，。！？,!?]{0,6}(?P<s1>咬)|(?:狗|犬)[^。！？!?]{0,12}(?P<s2>追着咬|咬了|咬到|咬住)|咬了一口|咬人|流血|受伤了|有人受伤|有人摔倒|昏迷|晕倒|救命|快来人"
        r"|砸伤|砸到人|掉下来.{0,4}砸"
        # someone hurt, said of the person or a body part ("驾驶员头部受了伤", "两个人的腿部受了轻伤")
        r"|(?:人|者|驾驶员|司机|孩子|小孩|老人|头|头部|腿|腿部|手|手臂|脸|身上|额头)[^，。！？,!?]{0,3}受伤",
    ),
    ("falling", r"倒下来|塌下来|砸下来|掉下来了|掉[了下]?[一两几]块|轰的一声"),
    # pieces that fell or flew, counted ("接连丢了好几块", "掉了两块") or as fragments ("碎片直接飞到旁边的店里")
    (
        "falling",
        r"(?:掉|丢|落|扔|抛|甩|砸)(?:了|下|下来)?(?:好|接连)?(?:[一两三四五几十]|\d)+(?:块|片|根)(?![钱元])"
        r"|(?:碎片|碎块|碎渣|残片|碎石|碎砖|碎玻璃|玻璃碴)[^，。！？,!?]{0,8}(?:飞|溅|砸|崩)",
    ),
    # any thing that fell onto people or their things, whatever the thing ("断下的雕塑砸在小广场上")
    (
        "falling",
        r"砸(?:在|中|到|坏|烂|破|穿|裂|碎|弯|扁|伤|了)|(?:断|掉|坠|落|甩|飞|扔|抛|丢)(?:了)?下来|断下的|从天而降|天降"
        r"|往下(?:扔|抛|丢|砸)"
        r"|从(?:楼上|楼顶|顶楼|房顶|高空|天上|空中|高处|[\d一二三四五六七八九十几]+(?:楼|层))[^，。！？,!?]{0,8}(?:掉|落|坠|扔|抛|丢|砸)",
    ),
    (
        "trapped",
        r"被困|困住|困在|出不来了|按[^，。！？,!?]{0,6}(?:警铃|紧急呼叫|呼叫按钮|报警按钮|求救按钮|报警铃)",
    ),
    # water standing or spreading over the floor of a home, whatever let it in (rain, a pipe, a drain backing up)
    (
        "flood",
        r"发大水|水漫金山|(?:家里|家中|屋里|屋内|室内|房间|客厅|卧室|厨房|卫生间|地板)[^，。！？,!?]{0,6}"
        r"(?:全是水|都是水|到处是水|到处都是水|成了河|泡在水|被水泡|被水浸|水没过)"
        r"|(?:水|污水|粪水|雨水|脏水|臭水)[^，。！？,!?]{0,10}(?:冲进|涌进|流进|灌进|漫进|淌进|冲到|流到|漫到|涌到|淌到|涌入|流入|灌入)"
        r"[^，。！？,!?]{0,3}(?:我家|家里|屋里|屋内|室内|客厅|卧室|厨房|房间|家中)"
        r"|(?:流|淌|漫|冒|返|弄)得(?:家里|屋里|满屋|一屋|一地|地板上|地上)[^，。！？,!?]{0,3}(?:到处|全|都)"
        # the water follows the sentence: what flows, spreads or rises into a room is water, named or not
        # ("严重的时候都流到客厅、卧室里去了"); a leak that seeps or drips (渗到, 漏到) is not a flood
        r"|(?:流|漫|淹|灌|涌|淌|冲)(?:到|进|入|满)(?:了)?(?:我家|家里|屋里|屋内|室内|客厅|卧室|厨房|房间|家中|床上|床底|一楼住户)"
        r"|淹(?:到|过|没)(?:了)?(?:膝盖|小腿|大腿|腰|床|沙发|车轮)"
        r"|泡在水里|舀水|淘水|往外舀",
    ),
]
# Dangers where a worry is itself the report: someone may be trapped now, a person not seen or reached for days
# (whatever their age), a thing overhead that may fall onto people. A missed danger is worse than a false alarm,
# so these count even when said as a fear ("孩子会不会被关在电梯里？", "要是掉下来砸到人").
_PERSON = r"(?:他|她|人|老人|老太太|老太|老头|老伯|老爷子|大爷|大妈|阿姨|奶奶|爷爷|婆婆|邻居)"
_DAYS = (
    r"(?:[两三四五六七八九十几多]+天|好几天|这几天|这两天|几天|多日|一周|一个星期|连续[^，。！？,!?]{0,3}天)"
)
_WORRY_WORDS: list[tuple[str, str]] = [
    (
        "trapped",
        r"(?:会不会|是不是|是否|好像|可能|怀疑)[^，。！？,!?]{0,6}(?:被困|困在|关在|被关|卡在|夹在)[^，。！？,!?]{0,6}(?:电梯|轿厢|梯)"
        r"|(?:电梯|轿厢)[^，。！？,!?]{0,10}里(?:面|边)?(?:好像|可能)?有人",
    ),
    (
        "not_seen",
        rf"{_DAYS}[^，。！？,!?]{{0,4}}(?:没|不|未)(?:有)?(?:见|看到|看见|见到|露面|出门|开门|开过门|下楼)(?:过)?{_PERSON}?"
        rf"|(?:早晚|一直|始终|都)(?:没|不)(?:见到|看到|看见|见)(?:过)?{_PERSON}"
        rf"|联系不上{_PERSON}|(?:一直|始终)联系不上|失联",
    ),
    (
        "falling",
        r"摇摇欲坠|悬在半空|吊在半空|挂在半空|随时(?:都)?(?:有|可能)?(?:会)?(?:掉|坠|倒|塌|砸)|快(?:要)?(?:掉|倒|塌)下来"
        r"|(?:万一|要是|如果|假如|怕|担心|生怕|就怕)[^，。！？,!?]{0,10}(?:掉|砸|坠|倒|塌|落)(?:下来|下去|下)?[^，。！？,!?]{0,4}"
        r"(?:砸到人|砸伤|伤人|砸到小孩|砸到孩子|砸在.{0,2}头|砸到头)"
        # a named thing overhead, feared to fall ("就怕瓷砖往下掉"): tiles, glass, signs, trees, ice
        r"|(?:怕|担心|生怕|害怕|万一|随时|会不会)[^，。！？,!?]{0,6}"
        r"(?:瓷砖|墙砖|外墙|墙皮|墙体|玻璃|广告牌|招牌|树枝|大树|空调外机|外机|花盆|冰溜子|冰锥|冰凌|冰柱|砖头|石块|水泥块|雕塑|电线杆|围墙)"
        r"[^，。！？,!?]{0,6}(?:往下掉|掉下来|掉下|掉落|坠落|砸|落下|倒下|倒塌|塌下来)",
    ),
    # water reaching live electrics, even as a condition ("万一雨水灌进配电箱"): the water is there, or about to be
    (
        "wet_electrics",
        r"(?:万一|如果|要是|假如|一旦)[^，。！？,!?]{0,6}(?:水|雨水|雨)[^，。！？,!?]{0,6}(?:漫|灌|流|渗|进|淹|泡|淋)"
        r"[^，。！？,!?]{0,4}(?:电表箱|配电箱|配电柜|电箱|插座|插排|电线|电缆|电闸|变压器)",
    ),
]
_HYPOTHETICAL = re.compile(
    r"(?:万一|如果|若|倘若|要是|假如|一旦)[^，。！？,!?]{0,16}$"
    r"|(?:担心|害怕|怕|以防|以免|免得|避免|防止|会不会|是否|容易|可能会|哪天|随时可能|不然|否则|遇到|遇)[^，。！？,!?]{0,8}$"
)
# a danger as what something may cause ("容易引发火灾", "引起爆炸"): supposed; "引发了火灾" is told
_CAUSE = re.compile(r"(?:引发|引起|导致|造成|酿成|诱发)$")
# what would follow if it happened ("掉下来不得了", "真着火了消防车都进不来"): the danger is supposed, not told
_CONSEQUENCE = re.compile(
    r"^[^，。！？,!?]{0,6}?(?:就|可|那|那就)?(?:不得了|麻烦了|就完了|不堪设想|出大事|是迟早的事|迟早[^，。！？,!?]{0,4}事)"
)
# a danger named as a risk ("存在火灾隐患", "有触电风险", "起火的危险"): it may happen, it is not happening
_RISK = re.compile(r"^(?:人|他人|行人)?(?:的)?(?:隐患|风险|危险|可能|苗头)")
_COUNTERFACTUAL = re.compile(r"真(?:要|的要)?$")
# the rhetorical "is it waiting until the tree falls?" ("要等树倒了才管", "难道要等出了人命"): supposed, not told
_WAIT_UNTIL = re.compile(r"(?:要等|非要等|等到)[^，。！？,!?]{0,8}$")
# a state denied just before it ("不咬人", "没漏电", "没有冒烟"): the danger is said not to be there
_NEGATED = re.compile(r"(?:不|没|没有|未|并未|无)$")
_FEAR_INSIDE = re.compile(r"万一|如果|要是|假如|担心|害怕|怕|不得了|以防|会不会|是否|可能会|哪天|随时|一旦")
_RESOLVED = re.compile(r"(?:已经|已)(?:修好|修复|处理|解决|补上|换了|恢复|清理|救出)|修好了|没事了")
# A fire put out ("用水把火给灭了", "火被扑灭") was a fire: it is over only when the message also says no one is at
# risk ("没有人员伤亡", "人都没事"); otherwise it is a fire report like any other.
_FIRE_OUT = re.compile(
    r"(?:把|将)火(?:给)?(?:扑)?灭|火(?:势)?(?:被|已|已经|终于|很快|马上|才|给|就)*(?:扑灭|灭了|熄灭|浇灭)|扑灭(?:了)?"
)
_NO_ONE_AT_RISK = re.compile(
    r"(?:无|没有|没|未)(?:造成)?(?:任何)?(?:人员)?(?:伤亡|人受伤|受伤)|没人受伤|(?:人|大家)(?:都)?没事|幸无伤亡|(?:已经|已)(?:全部)?(?:疏散|撤离)"
)
_THING_STATE_RE = [
    (
        name,
        re.compile(
            rf"(?:{thing})[^。！？!?\n]{{0,{_NEAR}}}?(?P<s1>{state})|(?P<s2>{state})[^。！？!?\n]{{0,{_NEAR}}}?(?:{thing})"
        ),
    )
    for name, thing, state in _THING_STATE
]
_DANGER_RE = [(name, re.compile(rx)) for name, rx in _DANGER_WORDS]
_WORRY_RE = [(name, re.compile(rx)) for name, rx in _WORRY_WORDS]
# "物业好几天不见人", "师傅一直联系不上": staff not coming is a complaint, not a person missing
_STAFF = re.compile(
    r"物业|物管|保安|师傅|工作人员|城管|社区|居委|维修|客服|快递|外卖|老板|房东|开发商|施工|领导|干部"
)
# words that contain a danger word but mean something ordinary
_BENIGN = re.compile(
    r"砸墙|烟头|油烟|煤烟|烟道|抽烟|吸烟|烟花|烟囱|烟酒|香烟|烟盒|炊烟|烟蒂|油烟机|淹水后|防火|灭火器|着火点"
    # a cable let down for charging, rubbish thrown down: not a thing falling onto people
    r"|(?:电线|线缆|插排|插线板|充电线)[^，。！？,!?]{0,6}(?:扔|放|吊)下来|(?:扔|丢|抛)(?:下)?垃圾|垃圾袋|抽水马桶"
)


def _feared(clause: str, start: int, end: int) -> bool:
    """The danger is only feared or supposed: a marker just before the match or between its thing and state."""
    return bool(
        _HYPOTHETICAL.search(clause[:start])
        or _WAIT_UNTIL.search(clause[:start])
        or _COUNTERFACTUAL.search(clause[:start])
        or _CAUSE.search(clause[:start])
        or _FEAR_INSIDE.search(clause[start:end])
        or _CONSEQUENCE.search(clause[end:])
        or _RISK.search(clause[end:])
    )


def _state_start(m: re.Match[str]) -> int:
    """Where the state of a match begins (its named group), else the match itself."""
    for group in ("s1", "s2"):
        if m.re.groupindex.get(group) and m.group(group) is not None:
            return m.start(group)
    return m.start()


# Aspect particles, measure words and complements inside a verb-object danger ("着了火", "起了一场大火", "冒着黑烟",
# "塌了下来", "倒了下来", "陷了进去", "受了轻伤"): read as the bare compound, so one vocabulary covers the ways of
# saying it instead of a phrase list for each.
_ASPECT: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"([着起失])(?:了|过)(?:一场|一把|场|把)?(?:大|小|熊熊)?火"), r"\1火"),
    (re.compile(r"冒(?:着|了|出|起)(?:了)?(?:一股|股|阵阵|一阵|滚滚)?(?:浓|黑|白|青)?烟"), "冒烟"),
    (re.compile(r"([塌倒掉砸坠落断垮陷沉滚飞])(?:了|着)(下来|下去|进去|起来|进来)"), r"\1\2"),
    (re.compile(r"烧(?:了|着)起来"), "烧起来"),
    (re.compile(r"受(?:了)?(?:点|些)?(?:轻|重)?伤"), "受伤"),
]


def canonical(text: str) -> str:
    """The danger compounds of a text without their aspect particles and measure words (see `_ASPECT`)."""
    for rx, repl in _ASPECT:
        text = rx.sub(repl, text)
    return text


def dangers(text: str) -> list[str]:
    """The kinds of danger to people now that the message describes ('fire', 'open_cover', 'trapped' ...)."""
    t = canonical(_BENIGN.sub(lambda m: "□" * len(m.group(0)), normalise(text)))
    found: list[str] = []
    fire_over = False
    if _FIRE_OUT.search(t):
        fire_over = bool(_NO_ONE_AT_RISK.search(t))  # put out, and no one at risk: the fire is over
        if not fire_over:
            found.append("fire")
    for clause in re.split(r"(?<=[。！？!?\n；;])", t):
        if not clause.strip() or _RESOLVED.search(clause):
            continue
        for name, rx in [*_THING_STATE_RE, *_DANGER_RE]:
            for m in rx.finditer(clause):
                if _NEGATED.search(clause[: _state_start(m)]):
                    continue
                if not _feared(clause, m.start(), m.end()):
                    found.append(name)
                    break
        for name, rx in _WORRY_RE:
            if name == "not_seen" and _STAFF.search(clause):
                continue
            for m in rx.finditer(clause):
                if not _NEGATED.search(clause[: m.start()]):
                    found.append(name)
                    break
    return sorted(set(found) - ({"fire"} if fire_over else set()))


def urgency_of(text: str) -> str:
    """'urgent' when the message describes danger to people now (see `dangers`); otherwise 'normal'."""
    return "urgent" if dangers(text) else "normal"


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


_PREAMBLE = re.compile(
    r"^(?:我想|想|我要|要|我来|来)?(?:反映|投诉|报修|说)(?:一下|个|下)?(?:我们|咱们)?(?:楼|小区|这边|这里)?的?(?:情况|问题|事)?[，,：:。\s]*"
)


def ticket_title(description: str, place: str = "", limit: int = 32) -> str:
    """What a worker reads first: the place, then the problem ("3号楼2单元 楼道灯不亮")."""
    clauses = [c.strip() for c in re.split(r"[。！!？?\n，,；;]", description) if c.strip()]
    clauses = [c for c in (_PREAMBLE.sub("", c).strip() for c in clauses) if c] or [description.strip()]
    problem = short_title("，".join(clauses), limit)
    if place:
        head = re.sub(rf"{_SPOT}$", "", place) or place  # "3号楼2单元楼道" -> "3号楼2单元"
        problem = problem.replace(head, "", 1).strip(" ，,的") or problem
        title = f"{head} {problem}"
        return title if len(title) <= limit else title[: limit - 1] + "…"
    return problem


def short_title(description: str, limit: int = 20) -> str:
    """The ticket as named in group messages: '3号楼门口井盖松动'."""
    parts = [p.strip() for p in re.split(r"[。！!？?\n，,；;]", description) if p.strip()]
    t = parts[0] if parts else description.strip()
    for p in parts[1:]:  # a very short first clause ("快来人") needs the next one
        if len(t) >= 6:
            break
        t = f"{t}，{p}"
    return t if len(t) <= limit else t[: limit - 1] + "…"


# --- what kind of words: a problem named, or small talk -------------------------------------------------

# A state that is wrong with a thing, as residents say it. The trained model decides whether a message needs a
# ticket; this says whether the words *name a problem* at all, which the conversation needs where the model is
# not asked the right question: a short answer to "where?" ("5楼", "就在我家楼下") or a neighbour's answer
# ("益丰大药房是24小时营业的") is read as a report by a model trained on reports, but it names no problem.
_PROBLEM = re.compile(
    r"坏|故障|失灵|不亮|不灵|不转|不动|不走|不通|不响|不能用|用不了|没法用|打不开|关不上|锁不上|开不了|"
    r"停电|断电|没电|停水|断水|没水|不出水|水压|漏|渗|滴水|返水|冒水|堵|松动|松了|晃动|摇晃|歪了|倒了|"
    r"断了|掉了|掉下|脱落|破了|破损|裂|塌|陷|鼓包|起皮|生锈|锈了|冒烟|着火|起火|焦糊|臭|异味|味道[很太好]?大|刺鼻|"
    r"吵|噪音|扰民|太响|乱停|乱放|乱扔|乱丢|乱堆|乱贴|乱倒|乱搭|乱拉|堆满|堆放|堆了|堆着|占用|占了|占道|占着|"
    r"挡住|堵住|挡着|没人管|没人修|没人清|没人处理|没人来|不管|不处理|没处理|没清|没收|没拉走|满了|溢出|积水|"
    r"淹|危险|隐患|吓人|困|卡住|卡在|夹住|咬|受伤|摔|差点|拉屎|粪便|不拴绳|飞线|私拉|违建|违章|偷|被撬|丢了|"
    r"脏|蚊子|蚊虫|老鼠|蟑螂|虫子|霉|发黄|浑浊|不安全|不合理|收费不|多收|乱收|缺斤短两|态度差|态度不好|"
    r"需要帮助|需要帮忙|没人照顾|求助"
)


def names_problem(text: str) -> bool:
    """Whether the words name something wrong now (a broken, blocked, dirty, noisy or dangerous thing), not
    only a place, a fact or a thing already fixed ("电梯已经修好了")."""
    t = normalise(_AT.sub("", text))
    if dangers(t):
        return True
    for clause in re.split(r"[。！？!?\n；;，,]", t):
        if clause.strip() and not _RESOLVED.search(clause) and _PROBLEM.search(clause):
            return True
    return False


# Small talk as a whole message: thanks, greetings, goodbyes, praise, "ok". The kind picks the bot's reply.
_THANKS = r"谢谢|多谢|感谢|谢了|谢啦|辛苦了|辛苦啦|辛苦|麻烦了|麻烦你了|麻烦您了|太感谢了|非常感谢|十分感谢|thanks|thank you|thx|3q"
_SMALL_TALK = [
    ("thanks", _THANKS),
    ("greeting", r"你好|您好|嗨|哈喽|hello|hi|在吗|在不在|在么|早|早上好|早安|上午好|中午好|下午好|晚上好"),
    ("bye", r"再见|拜拜|bye|晚安|回头见"),
    ("praise", r"真棒|好棒|棒|厉害|真厉害|太厉害了|好用|真好用|点赞|给力|真聪明|不错|挺好|很好"),
    (
        "ack",
        r"好的|好|好滴|好嘞|好吧|行|行的|可以|收到|知道了|明白了|明白|了解|嗯|哦|ok|okay|对|是的|没事|没事了",
    ),
]
_TALK_LEAD = r"(?:好的|好|嗯嗯|嗯|收到|ok|行|哦|你|您|你们|小门|家门口助手|家门口|助手)*"
_TALK_TAIL = r"(?:[呀啊哈呢哦噢了啦嘛哟]|小门|家门口助手|家门口|助手|你|您|你们|大家|了|哈哈|啊)*"
_SMALL_TALK_RE = [
    (kind, re.compile(rf"^{_TALK_LEAD}(?:{rx})+{_TALK_TAIL}$", re.IGNORECASE)) for kind, rx in _SMALL_TALK
]
_THANKS_HEAD = re.compile(rf"^{_TALK_LEAD}(?:{_THANKS})", re.IGNORECASE)


def small_talk(text: str) -> str:
    """The kind of small talk a whole message is ('thanks', 'greeting', 'bye', 'praise', 'ack'), or ''."""
    t = re.sub(r"[\s,，。.!！~～?？、:：]+", "", normalise(_AT.sub("", text))).lower()
    if not t or len(t) > 16:
        return ""
    for kind, rx in _SMALL_TALK_RE:
        if rx.match(t):
            return kind
    # "谢谢你帮我登记了", "感谢你们这么快": thanks that say what for, as long as they name no new problem
    if _THANKS_HEAD.match(t) and not names_problem(t):
        return "thanks"
    return ""


# Thanks for a problem already solved ("没想到半小时他们就赶过来，帮我换了新的", "在政府帮助下，及时得到解决"):
# the message ends on the help or the fix and asks for nothing, so it is talk, not a report.
_GRATITUDE = re.compile(
    rf"{_THANKS}|点赞|多亏|幸亏有|贴心|暖心|感动|福气|好评|"
    r"得到(?:了)?解决|解决了|修好了|换了新的|换好了|帮我(?:换|修|弄|装|处理)|赶(?:了)?过来|可好了|亮堂|焕然一新"
)
_REQUEST = re.compile(
    r"希望|请|麻烦|尽快|能不能|能否|可否|怎么办|咋办|管管|管一管|建议|要求|盼|为什么|凭什么|[?？]"
)


def thanks_for_help(text: str) -> bool:
    """Whether the message thanks or praises help already given and asks for nothing (see `_GRATITUDE`)."""
    t = normalise(_AT.sub("", text))
    clauses = [c for c in re.split(r"[。！!；;，,\n]", t) if c.strip()]
    if not clauses or _REQUEST.search(t) or dangers(t):
        return False
    last = clauses[-1]
    return bool(_GRATITUDE.search(last)) and not (_PROBLEM.search(last) and not _RESOLVED.search(last))


# A complaint that ends by asking who handles it ("…差点让她跌倒。请问这究竟该哪个部门管理？") is a complaint:
# the question is how to get the problem told above solved.
_WHO_HANDLES = re.compile(
    r"哪个部门|什么部门|哪些部门|谁管|谁来管|找谁|归谁|谁负责|有没有人管|该怎么管|什么政策"
)


def complaint_asking_who(text: str) -> bool:
    """A problem told in its own sentence(s), then a question asking who deals with it."""
    t = normalise(_AT.sub("", text))
    m = _WHO_HANDLES.search(t)
    if not m:
        return False
    head = t[: m.start()]
    cut = max(head.rfind(p) for p in "。！？!?")
    told = head[: cut + 1] if cut >= 0 else ""
    return len(told) >= 12 and names_problem(told)
