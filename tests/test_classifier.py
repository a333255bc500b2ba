"""The classifier on the labelled dev set (cross-validated, and held out), extraction, masking, `classify`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.config import Config
from core.intent import INTENTS
from nlp.classifier import (
    BUNDLED,
    GENERATED_FILES,
    REAL_DIR,
    REAL_FILES,
    evaluate,
    held_out,
    load_classifier,
    out_of_fold,
    read_examples,
    training_files,
)
from nlp.extract import clean_description, extract_place, mask_pii, place_key, short_title, urgency_of
from tests.conftest import ROOT

DEV = ROOT / "tests" / "data" / "classify_dev.jsonl"
TARGETS = {"needs_ticket": 0.95, "service_code": 0.85, "intent": 0.90}


@pytest.fixture(scope="module")
def dev() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_dev_set_is_big_varied_and_labelled(dev: list[dict[str, Any]], config: Config) -> None:
    assert len(dev) >= 200
    assert len({r["text"] for r in dev}) == len(dev)
    assert set(Counter(r["intent"] for r in dev)) == set(INTENTS)
    codes = {s.service_code for s in config.services.services}
    assert {r["service_code"] for r in dev if r["needs_ticket"]} == codes
    assert {r["role"] for r in dev} == {"resident", "rider", "staff"}
    for r in dev:
        assert r["needs_ticket"] == (r["intent"] in ("complaint", "hazard"))
        assert (r["service_code"] is not None) == r["needs_ticket"]
        assert r["urgency"] in ("normal", "urgent")


REAL = REAL_FILES[0]  # nlp/data/real/: the real messages ship with the classifier as training rows


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _assert_labelled(rows: list[dict[str, Any]], config: Config) -> None:
    """Sourced, and labelled by the rules of tests/data/README.md."""
    codes = {s.service_code for s in config.services.services}
    for r in rows:
        assert r["source"]["title"]
        assert r["needs_ticket"] == (r["intent"] in ("complaint", "hazard"))
        assert (r["service_code"] in codes) if r["needs_ticket"] else r["service_code"] is None
        assert r["urgency"] in ("normal", "urgent")


@pytest.fixture(scope="module")
def real() -> list[dict[str, Any]]:
    return _rows(REAL)


def test_real_set_is_labelled_sourced_and_not_in_the_generated_files(
    real: list[dict[str, Any]], config: Config
) -> None:
    assert len(real) >= 200 and len({r["text"] for r in real}) == len(real)
    assert {r["split"] for r in real} == {"dev", "heldout"}
    _assert_labelled(real, config)
    trained = {e.text for f in GENERATED_FILES for e in read_examples(f)}
    assert not trained & {r["text"] for r in real}
    assert REAL in BUNDLED


DATA = ROOT / "tests" / "data"
# the held-out real sets of issue 11 parts 3 to 7, each collected and labelled before any classifier read it and
# joined to the real training rows once its figures were printed, and the rows collected to train on: (file, split, rows, dangers, ordinary reports)
FRESH_SETS = [
    ("classify_real_fresh.jsonl", "fresh", 100, 20, 60),
    ("classify_real_fresh2.jsonl", "fresh2", 120, 35, 60),
    ("classify_real_fresh3.jsonl", "fresh3", 110, 40, 55),
    ("classify_real_fresh4.jsonl", "fresh4", 90, 40, 40),
    ("classify_real_fresh5.jsonl", "fresh5", 130, 55, 55),
    # collected as training rows (issue 11 part 8); rows on a page the sixth fresh set cites were dropped
    ("classify_real_train6.jsonl", "train6", 170, 65, 75),
    ("classify_real_fresh6.jsonl", "fresh6", 140, 55, 65),
]


@pytest.fixture(scope="module")
def fresh_sets() -> dict[str, list[dict[str, Any]]]:
    return {split: _rows(REAL_DIR / name) for name, split, *_ in FRESH_SETS}


@pytest.mark.parametrize("k", range(len(FRESH_SETS)), ids=[s[1] for s in FRESH_SETS])
def test_each_fresh_set_is_labelled_sourced_and_new(
    k: int, real: list[dict[str, Any]], dev: list[dict[str, Any]], config: Config
) -> None:
    """Many dangers and ordinary reports, sourced, none of its messages or pages in an earlier set, its messages in
    no generated training file."""
    name, split, least, dangers, ordinary = FRESH_SETS[k]
    rows = _rows(REAL_DIR / name)
    earlier = [*real, *(r for n, *_ in FRESH_SETS[:k] for r in _rows(REAL_DIR / n))]
    assert len(rows) >= least and len({r["text"] for r in rows}) == len(rows)
    assert {r["split"] for r in rows} == {split} and len({r["id"] for r in rows}) == len(rows)
    _assert_labelled(rows, config)
    reports = [r for r in rows if r["needs_ticket"]]
    assert sum(r["urgency"] == "urgent" for r in reports) >= dangers
    assert sum(r["urgency"] == "normal" for r in reports) >= ordinary
    assert REAL_DIR / name in BUNDLED
    _assert_new(rows, earlier, dev)


def _assert_new(rows: list[dict[str, Any]], earlier: list[dict[str, Any]], dev: list[dict[str, Any]]) -> None:
    texts = {r["text"] for r in rows}
    trained = {e.text for f in GENERATED_FILES for e in read_examples(f)}
    for other in (trained, {r["text"] for r in earlier}, {r["text"] for r in dev}):
        assert not texts & other
    pages = {r["source"]["url"] for r in rows if r["source"].get("url")}
    assert not pages & {r["source"].get("url") for r in earlier}


# The seventh fresh set (issue 11 part 9): collected and labelled by someone who never ran a classifier, committed
# before any classifier read it, never a training row (no page of it in a training file); run once after the last change
# to the model (bench/results/classify-fresh7-once-20261202.txt): .958 / .824 / .748 / .741 / .066. Floors a little under.
FRESH7 = DATA / "classify_real_fresh7.jsonl"
FRESH7_FLOORS = {"needs_ticket": 0.94, "intent": 0.80, "service_code": 0.73, "urgent_recall": 0.72}
FRESH7_MOST_FALSE_ALARMS = 0.08


@pytest.fixture(scope="module")
def fresh7() -> list[dict[str, Any]]:
    return _rows(FRESH7)


def test_the_seventh_fresh_set_is_labelled_new_and_never_trained_on(
    fresh7: list[dict[str, Any]],
    real: list[dict[str, Any]],
    fresh_sets: dict[str, list[dict[str, Any]]],
    dev: list[dict[str, Any]],
    config: Config,
) -> None:
    rows = fresh7
    assert len(rows) >= 130 and len({r["text"] for r in rows}) == len(rows)
    assert {r["split"] for r in rows} == {"fresh7"}
    _assert_labelled(rows, config)
    assert sum(r["urgency"] == "urgent" for r in rows) >= 55
    assert FRESH7 not in BUNDLED and FRESH7 not in training_files(config)
    _assert_new(rows, [*real, *(r for subset in fresh_sets.values() for r in subset)], dev)


def test_accuracy_on_the_seventh_fresh_set_never_trained_on(
    fresh7: list[dict[str, Any]], config: Config
) -> None:
    m = evaluate(load_classifier(config), fresh7)
    print("seventh fresh, held out:", {k: round(v, 3) for k, v in m.items()})
    for key, target in FRESH7_FLOORS.items():
        assert m[key] >= target, f"{key}: {m[key]:.3f} < {target}"
    assert m["false_alarms"] <= FRESH7_MOST_FALSE_ALARMS


def test_held_out_accuracy_on_the_synthetic_set(dev: list[dict[str, Any]], config: Config) -> None:
    """Trained without a single dev message: floors measured on data the model was not fitted on."""
    m = held_out(config, dev)
    print("synthetic, held out:", {k: round(v, 3) for k, v in m.items()})
    # measured 0.968 / 0.916 / 0.960 / 1.000 / 0.047 (part 9: 0.976 needs_ticket before the sixth fresh set joined)
    assert m["needs_ticket"] >= 0.96 and m["intent"] >= 0.91 and m["service_code"] >= 0.95
    assert m["urgent_recall"] >= 0.95 and m["false_alarms"] <= 0.06


# Since issue 11 part 7 the real messages are training rows, so they are measured out of fold only: a grouped 3-fold
# CV (whole source pages per fold), each fold by a model trained on the generated files and the other folds' real
# rows (docs/understanding.md part 7 has the 5-fold table). Floors a little under what was measured.
# Measured (issue 11 part 9, 1,101 rows): pooled .973 / .879 / .791 / .808 / .054; fresh3 .983 / .881 / .762 / .795 /
# .049; fresh4 .956 / .769 / .659 / .638 / .049; fresh5 .947 / .773 / .719 / .684 / .088; fresh6 .973 / .819 / .783 / .690
# / .070 (needs_ticket / intent / service / urgent recall / false alarms). Three folds train on two thirds of the real
# rows; the 5-fold figures of docs/understanding.md (pooled .972 / .885 / .795 / .822 / .053) are the ones to quote.
OOF_FLOORS = ({"needs_ticket": 0.95, "intent": 0.86, "service_code": 0.77, "urgent_recall": 0.79}, 0.07)
# the files no rule was ever written from: (floors, most false alarms)
PER_SET_FLOORS = {
    "fresh3": ({"needs_ticket": 0.95, "intent": 0.85, "service_code": 0.72, "urgent_recall": 0.77}, 0.07),
    "fresh4": ({"needs_ticket": 0.92, "intent": 0.73, "service_code": 0.62, "urgent_recall": 0.60}, 0.07),
    "fresh5": ({"needs_ticket": 0.92, "intent": 0.74, "service_code": 0.69, "urgent_recall": 0.65}, 0.11),
    "fresh6": ({"needs_ticket": 0.95, "intent": 0.79, "service_code": 0.75, "urgent_recall": 0.66}, 0.09),
}


def test_out_of_fold_accuracy_on_real_messages(
    real: list[dict[str, Any]], fresh_sets: dict[str, list[dict[str, Any]]], config: Config
) -> None:
    """Every real message, each classified by a model that never saw its page (three fits of a few seconds)."""
    rows = [*real, *(r for subset in fresh_sets.values() for r in subset)]
    answers = out_of_fold(config, rows, folds=3)

    class OutOfFold:
        def classify(self, text: str) -> Any:
            return answers[text]

    for name, subset in (("pooled", rows), *((s, fresh_sets[s]) for s in PER_SET_FLOORS)):
        floor, alarms = OOF_FLOORS if name == "pooled" else PER_SET_FLOORS[name]
        m = evaluate(OutOfFold(), subset)
        print(f"{name}, out of fold:", {k: round(v, 3) for k, v in m.items()})
        for key, target in floor.items():
            assert m[key] >= target, f"{name} {key}: {m[key]:.3f} < {target}"
        assert m["false_alarms"] <= alarms, f"{name}: false alarms {m['false_alarms']:.3f}"


@pytest.mark.parametrize(
    ("text", "intent", "service"),
    [
        # a loose but closed cover is an ordinary report (tests/data/README.md), and a report's kind follows its
        # urgency since issue 11 part 7: a complaint, no longer a hazard
        ("3号楼门口井盖松了，差点摔了", "complaint", "municipal_facility"),
        # a resident asking after a ticket is a question: answered unprompted, by handlers/status.py
        ("查询工单 #123", "question", None),
        ("我的工单", "question", None),
        ("工单#102进度怎么样了", "question", None),
        ("/工单 #88 已处理", "command", None),
        ("/通知 明天停水", "command", None),
        ("电瓶车能推上楼充电吗", "question", None),
        ("【通知】明天9点到12点停水，请提前储水", "notice", None),
        ("哈哈哈 笑死", "chitchat", None),
        ("", "chitchat", None),
        ("4单元楼道里一股很大的煤气味", "hazard", "public_safety"),
        ("楼上装修天天电钻响，周末也不停", "complaint", "noise"),
    ],
)
def test_examples(config: Config, text: str, intent: str, service: str | None) -> None:
    c = load_classifier(config).classify(text)
    assert (c.intent, c.service_code) == (intent, service)
    assert c.needs_ticket == (service is not None)


@pytest.mark.parametrize(
    ("text", "service"),
    [
        # the broken thing decides the service, not the vehicle or person it endangered
        ("小门 3号楼门口井盖松了，电动车差点翻了，电话13812345678", "municipal_facility"),
        ("5号楼门口的路灯不亮，骑电动车的差点撞树上", "municipal_facility"),
        ("东门那个井盖没盖好，送外卖的电瓶车轮子卡进去了", "municipal_facility"),
        # and a vehicle that is itself the problem is still an e-bike matter
        ("3号楼楼道里有人给电动车飞线充电", "ebike_fire_safety"),
        ("电瓶车停在消防通道上充电", "ebike_fire_safety"),
    ],
)
def test_the_broken_object_decides_the_service(config: Config, text: str, service: str) -> None:
    c = load_classifier(config).classify(text)
    assert c.needs_ticket and c.service_code == service


@pytest.mark.parametrize(
    ("text", "service"),
    [
        # a leak from the flat above is the building's (shared pipes and floors) ...
        ("楼上卫生间漏水漏到我家天花板了", "property_repair"),
        ("隔壁家的水管渗水到我家墙里，墙皮都起泡了", "property_repair"),
        # ... and the neighbour's matter only when the neighbour will not act
        ("楼上漏水到我家，找了他好几次都不让师傅进门", "neighbor_dispute"),
        ("楼上卫生间渗水到我家，跟他协商了几回都不了了之", "neighbor_dispute"),
    ],
)
def test_a_neighbours_leak_belongs_to_the_building_unless_the_neighbour_will_not_act(
    config: Config, text: str, service: str
) -> None:
    c = load_classifier(config).classify(text)
    assert c.needs_ticket and c.service_code == service


@pytest.mark.parametrize(
    "text",
    [
        "楼道里堆满纸箱，存在很大的火灾隐患",  # a danger named as a risk
        "电动车停在楼道里充电，若发生起火，后果不堪设想",  # supposed under 若
        "私家车直接冲进绿化带停车，小孩在旁边玩",  # a car rushing in, no water
    ],
)
def test_a_risk_or_a_supposition_is_not_danger_now(text: str) -> None:
    assert urgency_of(text) == "normal"


def test_urgency_is_danger_to_people_now(config: Config) -> None:
    model = load_classifier(config)
    assert model.classify("5号楼三楼着火了！！冒黑烟了").urgency == "urgent"
    assert model.classify("西门口井盖被撬走了，小孩容易掉下去").urgency == "urgent"
    assert model.classify("3号楼门口井盖松了").urgency == "normal"
    assert urgency_of("电线裸露还滋滋响") == "urgent" and urgency_of("路灯不亮") == "normal"
    # a danger only supposed, by what would follow or by "真…了", is not danger now
    assert urgency_of("消防通道堆满了电动车，真着火了消防车都进不来") == "normal"
    assert urgency_of("阳台外沿放了好几个花盆，掉下来不得了") == "normal"
    assert urgency_of("楼下电线掉在地上了，不得了，还在冒火花") == "urgent"


@pytest.mark.parametrize(
    ("text", "urgency"),
    [
        # a state said not to be there is not danger ("不咬人", "没漏电")
        ("遛狗从来不拴绳，狗主人还说它不咬人", "normal"),
        ("那条狗没咬到人，就是叫得凶", "normal"),
        ("配电箱查过了，没漏电，就是门关不上", "normal"),
        # "被电" in "被电动车堵住" is no electric shock
        ("消防通道被电动车和杂物堵住了", "normal"),
        # the rhetorical "要等树倒了才管" supposes the danger
        ("楼前的树都歪了，报了几次没人管，是不是要等树倒了才管", "normal"),
        # wind through a broken window is not water
        ("单元门的闭门器坏了，冬天风呼呼往里灌", "normal"),
        # and phrasings of real danger the concepts did not know
        ("电梯卡在六楼和七楼之间了，里面有个老太太", "urgent"),
        ("停电了，电梯里关着一个孕妇和一个孩子", "urgent"),
        ("路边的雨水篦子少了两块，孩子跑来跑去", "urgent"),
        ("有条流浪狗很凶，这几天追着咬了两个骑车的人", "urgent"),
        ("暴雨下了一夜，地库的水还在从坡道往里灌", "urgent"),
        ("一根电缆的外皮老化开裂了，下雨能听到噼啪的声音", "urgent"),
    ],
)
def test_danger_concepts_read_negation_and_new_phrasings(text: str, urgency: str) -> None:
    assert urgency_of(text) == urgency


@pytest.mark.parametrize(
    "text",
    [
        # issue 11 part 4: the concepts generalised, not the missed phrases (none of these is in a data set)
        "小区门口那个化粪池盖子破了个大洞",  # a cover's word with any word of damage or absence
        "小区里有个井盖缺损得厉害",
        "三楼阳台上的晾衣杆断下来砸在人行道上",  # anything that fell onto people, whatever the thing
        "家里厨房下水道往外冒水，地板上全是水",  # water spreading over a home's floor
        "雨水顺着墙缝流进了我家卧室",
        "孩子会不会被关在电梯里？5号楼电梯停了",  # a worry that someone is trapped
        "货梯突然不动了，我们在里面一直按紧急呼叫按钮",  # pressing a lift's alarm
        "对门的叔叔三天没开门了，敲门也没人应",  # a person not seen for days, no age word
        "楼上窗台的花盆歪在外面，随时会掉下来",  # a thing that may fall onto people
    ],
)
def test_danger_concepts_generalise_to_new_words(text: str) -> None:
    assert urgency_of(text) == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "物业好几天不见人影，电话也打不通",  # staff not coming is no person missing
        "电梯坏了三天了，也没人来修",
        "楼上卫生间漏水，天花板一直在滴",  # a drip is a leak, not a flood
        "有人从窗户把电线扔下来给电动车充电",  # a cable let down, not a thing falling
        "楼上有人往下扔垃圾袋，草坪上全是",
    ],
)
def test_the_generalised_concepts_do_not_raise_these_alarms(text: str) -> None:
    assert urgency_of(text) == "normal"


@pytest.mark.parametrize(
    "text",
    [
        # issue 11 part 5: Chinese as written, not phrase lists (none of these is in a data set)
        "隔壁仓库着了火",  # an aspect particle inside the verb-object 着火
        "三楼厨房起了一场大火",  # and a measure word
        "楼梯间冒着烟",
        "小区门口的路灯杆倒了下来",  # a complement after 了
        "小区门口的地面陷了下去",
        "开着车路过，车轮突然沉了下去",  # subsidence said of the car
        "那段路面一下子垮了",  # a head character with the thing it happens to
        "天花板的石膏接连掉了好几片",  # pieces counted
        "花盆摔碎了，碎片溅到路人身上",  # fragments
        "台风过后那棵大树靠在了三楼的窗户上",  # a tree leaning on a house
        "下水道又堵了，脏东西都漫到卧室里",  # what spreads into a room is water, named or not
        "楼道的配电箱在滴水",  # water in the electrics
        "万一雨水灌进配电箱就麻烦了",  # and as a condition
        "天天从楼下过，就怕外墙瓷砖往下掉",  # a named overhead thing, feared to fall
        "火已经扑灭了，但楼道里全是烟，老人还在楼上",  # put out, and someone still at risk
        "楼梯扶手断了，老人受了轻伤",  # someone hurt
    ],
)
def test_danger_concepts_read_chinese_as_written(text: str) -> None:
    assert urgency_of(text) == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "厨房着火，火很快被扑灭了，没有人员伤亡",  # a fire out and no one at risk is over
        "楼道里乱拉电线，极易引起火灾",  # a danger as what something may cause
        "流浪狗太多，有咬伤人的危险",  # a danger named as a risk
        "一旦电动车在楼道里充电时爆炸，后果不堪设想",  # a condition further before the danger
        "楼上卫生间漏水，一直渗到我家天花板",  # a leak that seeps is not a flood
        "楼下有人丢了好几块钱",  # pieces of money are not pieces falling
    ],
)
def test_the_part_5_concepts_do_not_raise_these_alarms(text: str) -> None:
    assert urgency_of(text) == "normal"


@pytest.mark.parametrize(
    ("text", "intent", "service"),
    [
        # thanks for help already given asks for nothing: talk in `classify`, as in the chat
        ("门口的路灯坏了半年，在领导留言板反映后，终于修好了", "chitchat", None),
        # a problem told, then "该找谁管？": a complaint
        ("小区里有人遛狗不拴绳，差点扑倒我家孩子。请问这归哪个部门管？", "complaint", "pets"),
        # the owner of discoloured tap water: the supply network, unless the building's own part is named
        ("这几天自来水放出来是黄的，烧开了还有沉淀", "complaint", "municipal_facility"),
        ("楼顶水箱太久没洗，水龙头出来的水发黄", "complaint", "property_repair"),  # (held before too)
        # a person not seen is the carers' matter
        ("隔壁的阿姨这两天不见人了，电话也打不通", "hazard", "elderly_child_care"),
    ],
)
def test_thanks_who_handles_it_and_the_owner_of_tap_water(
    config: Config, text: str, intent: str, service: str | None
) -> None:
    c = load_classifier(config).classify(text)
    assert (c.intent, c.service_code) == (intent, service)


def test_a_letter_is_filed_by_the_problem_it_opens_with(config: Config) -> None:
    """The clauses after a letter's opening tell what the problem led to and who did nothing; their words
    (停车, 臭味) name other services and must not outvote the broken thing."""
    from nlp.classifier import opening

    assert opening("地库被水淹了，车都泡在里面，物业不管，不让我们停车") == "地库被水淹了，车都泡在里面"
    assert opening("楼道灯不亮了") is None and opening("灯坏了，没人修") is None
    model = load_classifier(config)
    for text, service in (
        (
            "小区里的大树被风刮得歪向一边，树枝压在车棚上，车棚里的电动车推不出来，大家只能把车停在楼道里充电",
            "greenery",
        ),
        (
            "楼下的垃圾站好几天没清运了，垃圾堆到了路中间，车位被占了，停车的人只能把车停到马路边",
            "sanitation",
        ),
    ):
        assert model.classify(text).service_code == service, text


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("3号楼门口井盖松了", "3号楼门口"),
        ("焕玉里2号门的路灯不亮了", "焕玉里2号门"),
        ("宜景菜市场门口一堆垃圾", "宜景菜市场门口"),
        ("15号楼2单元楼道灯坏了", "15号楼2单元楼道"),
        ("昨天晚上焕玉里2号门那里有人吵架", "焕玉里2号门"),
        ("@家门口助手 东门路灯不亮", "东门"),
        ("电梯坏了", None),
        ("明天9点到12点停水", None),
    ],
)
def test_place_as_written(text: str, place: str | None) -> None:
    assert extract_place(text) == place


def test_place_keys_compare_the_same_place() -> None:
    assert place_key("三号楼门口") == place_key("3号楼") == place_key("3栋")
    assert place_key("1号楼1单元") != place_key("21号楼1单元")


def test_phone_and_id_numbers_are_masked() -> None:
    t = mask_pii("电话13812345678，座机022-23456789，身份证11010119900307123X")
    assert t == "电话138****5678，座机022-****6789，身份证1101**********123X"
    assert "13812345678" not in clean_description("@小门 大家好 我电话 138 1234 5678 井盖松了 谢谢！！")


def test_clean_description_and_title() -> None:
    assert clean_description("@小门 大家好，那个 东门路灯不亮了 辛苦了🙏[强]") == "东门路灯不亮了"
    assert short_title("3号楼门口井盖松了，差点摔了，太危险") == "3号楼门口井盖松了"


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_classify_json_line_mode() -> None:
    lines = ["3号楼门口井盖松了", "助老食堂几点开饭", "", "4单元楼道里一股很大的煤气味"]
    r = _cli("classify", "--json", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(out) == len(lines)
    assert all(list(o) == ["intent", "service_code", "location", "urgency", "needs_ticket"] for o in out)
    assert out[
        0
    ] == {  # a loose, closed cover: an ordinary report, so a complaint (a report's kind follows urgency)
        "intent": "complaint",
        "service_code": "municipal_facility",
        "location": "3号楼门口",
        "urgency": "normal",
        "needs_ticket": True,
    }
    assert out[1]["intent"] == "question" and out[1]["service_code"] is None
    assert out[3]["urgency"] == "urgent" and out[3]["service_code"] == "public_safety"


def test_classify_one_message_and_bad_input() -> None:
    r = _cli("classify", "电梯坏了好几天了")
    assert r.returncode == 0 and "property_repair" in r.stdout
    bad = _cli("classify", "  ")
    assert bad.returncode == 2 and bad.stderr.startswith("doorstep: error:") and "Traceback" not in bad.stderr


def test_the_trained_model_is_saved_and_loaded_while_its_inputs_match(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up does not train: the data directory keeps the model, keyed by everything it was trained on."""
    import nlp.classifier as clf

    clf._CACHE.clear()
    trained = clf.trained_for(config)
    key = clf.model_key(config)
    saved = clf.model_path(config, key)
    assert saved.exists()

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("trained although a saved model matched")

    clf._CACHE.clear()
    with monkeypatch.context() as m:
        m.setattr(clf, "train", no_training)
        loaded = clf.trained_for(config)
    for text in ("3号楼门口井盖松了，差点摔了", "电梯三天两头坏", "楼上装修天天电钻响", "助老食堂几点开饭"):
        assert loaded.classify(text) == trained.classify(text)
        assert loaded.intent_scores(text) == pytest.approx(trained.intent_scores(text))
        assert loaded.urgent_probability(text) == pytest.approx(trained.urgent_probability(text))

    # new corrections make a new key: trained again, the old file replaced
    path = clf.corrections_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "text": "大铁笼子趴窝了",
        "intent": "complaint",
        "service_code": "property_repair",
        "source": "correction",
    }
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    assert clf.model_key(config) != key
    clf.trained_for(config)
    assert not saved.exists() and clf.model_path(config, clf.model_key(config)).exists()

    # a damaged file is trained over, not fatal
    clf._CACHE.clear()
    clf.model_path(config, clf.model_key(config)).write_bytes(b"not a model")
    assert clf.trained_for(config).classify("电梯坏了").service_code == "property_repair"


def test_features_are_the_tfidf_rows_scikit_learn_would_build(config: Config) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from nlp.classifier import Features, Featuriser

    texts = ["3号楼门口井盖松了", "电梯三天两头坏，坏了坏了", "助老食堂几点开饭", "楼道灯不亮"]
    f = Featuriser(config.lexicon.terms)
    ours = Features(f, None).fit(texts).matrix(texts).toarray()
    ref = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit_transform(
        [f(t) for t in texts]
    )
    assert ours == pytest.approx(ref.toarray())
