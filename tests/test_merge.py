"""The merge rule (issue 10, item 13): two reports merge only when the place and the problem agree;
coordinates alone never merge reports whose place texts name different places."""

from __future__ import annotations

import re

import pytest

from bot.app import App
from core.message import Location
from tests.support import RecordingChannel, Say
from tests.test_tickets import say_all
from tickets.merge import Sighting, same_place, same_problem

MUNICIPAL = ["井盖", "路灯", "路面", "塌陷", "下水道", "窨井"]
SIM_DEFAULT = (39.1600, 117.2100)  # what the simulator page used to send with every "发位置"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("3号楼门口", "三号楼门口", True),
        ("3号楼门口", "3号楼", True),  # a finer spot within the building
        ("3号楼", "3号楼2单元", True),
        ("3号楼门口", "3号楼门前", True),  # synonyms of one spot
        ("3号楼门口", "南门口", False),
        ("3号楼门口", "3号楼东侧", False),
        ("5号楼东侧", "5号楼西边", False),
        ("1号楼", "21号楼", False),
    ],
)
def test_place_words_decide(a: str, b: str, same: bool) -> None:
    near = Sighting(a, *SIM_DEFAULT, ""), Sighting(b, *SIM_DEFAULT, "")
    assert same_place(*near) is same  # the same coordinates do not override the words


def test_coordinates_decide_only_without_words() -> None:
    here = Sighting("", 39.16, 117.21, "")
    assert same_place(here, Sighting("3号楼门口", 39.16005, 117.21005, "")) is True
    assert same_place(here, Sighting("", 39.17, 117.21, "")) is False
    assert same_place(Sighting("", None, None, ""), Sighting("3号楼", None, None, "")) is None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("3号楼门口井盖松了，差点摔了", "3号楼门口的井盖松动了，晚上很危险", True),
        ("5号楼东侧路灯不亮", "5号楼门口井盖松了", False),
        ("路灯不亮了", "路灯坏了好几天", True),
    ],
)
def test_the_problem_must_agree(a: str, b: str, same: bool) -> None:
    assert same_problem(a, b, MUNICIPAL) is same


async def test_same_default_coordinates_do_not_merge_different_places(
    tapp: App, channel: RecordingChannel, say: Say
) -> None:
    pin = Location(*SIM_DEFAULT, "")
    await say_all(tapp, say("南门口井盖没了", location=pin, sender="u_liu"))
    await say_all(tapp, say("3号楼门口井盖松了", location=pin))
    await say_all(tapp, say("5号楼门口井盖松了", sender="u_chen"))
    await say_all(tapp, say("5号楼东侧路灯不亮", sender="u_ma"))
    acks = channel.texts("幸福里3号楼")  # not the urgent alert to the grid worker
    assert [re.findall(r"工单号 #\d+", t) for t in acks] == [[f"工单号 #{n}"] for n in (1, 2, 3, 4)], acks
    await say_all(tapp, say("3号楼门口的井盖松动了，晚上很危险", sender="u_wu"))
    assert "已合并到工单 #2" in channel.texts("幸福里3号楼")[-1]
