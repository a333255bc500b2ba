"""pii/__init__.py, table-driven: every common way residents write a phone or ID number is masked, and the numbers
that are not personal (ticket numbers, dates, rooms, amounts, times, hotlines) are left exactly as written."""

from __future__ import annotations

import pytest

from pii import coarse_coordinate, coarse_place, mask_pii, phone_numbers

# (as written, as masked)
MASKED = [
    # mobiles
    ("13812345678", "138****5678"),
    ("138.1234.5678", "138****5678"),
    ("138 1234 5678", "138****5678"),
    ("138-1234-5678", "138****5678"),
    ("138 - 1234 - 5678", "138****5678"),
    ("1381234 5678", "138****5678"),
    ("138·1234·5678", "138****5678"),
    ("１３８１２３４５６７８", "138****5678"),
    ("１３８－１２３４－５６７８", "138****5678"),
    ("1 3 8 1 2 3 4 5 6 7 8", "138****5678"),
    ("+86 138 1234 5678", "138****5678"),
    ("+8613812345678", "138****5678"),
    ("+86-138-1234-5678", "138****5678"),
    ("＋86 13812345678", "138****5678"),
    ("86 13812345678", "138****5678"),
    ("008613812345678", "138****5678"),
    ("0086 138 1234 5678", "138****5678"),
    ("19912345678", "199****5678"),
    # the spaced ten-digit number and other local numbers
    ("150 000 0111", "150****0111"),
    ("150-000-0111", "150****0111"),
    ("1500000111", "150****0111"),
    ("2345 6789", "****89"),
    ("23456789", "****89"),
    ("2345-6789", "****89"),
    # landlines with their area code
    ("022-23456789", "022-****6789"),
    ("02223456789", "022-****6789"),
    ("022 2345 6789", "022-****6789"),
    ("(022)2345-6789", "022-****6789"),
    ("（022）23456789", "022-****6789"),
    ("010-12345678", "010-****5678"),
    ("0755-1234567", "0755-****4567"),
    ("0755 1234 5678", "0755-****5678"),
    ("０２２－２３４５６７８９", "022-****6789"),
    # resident ID numbers (18 and the old 15) and bank cards
    ("110101199003071234", "1101**********1234"),
    ("11010119900307123X", "1101**********123X"),
    ("11010119900307123x", "1101**********123X"),
    ("110101 19900307 1234", "1101**********1234"),
    ("110101 19900307 123X", "1101**********123X"),
    ("110101-19900307-123X", "1101**********123X"),
    ("1101 0119 9003 0712 3X", "1101**********123X"),
    ("110101 1990 0307 1234", "1101**********1234"),
    ("１１０１０１１９９００３０７１２３Ｘ", "1101**********123X"),
    ("130102750101123", "1301*******1123"),
    ("6222 0212 3456 7890 123", "6222***********0123"),
    # other spellings
    ("一三八一二三四五六七八", "一三八****七八"),
    ("zhang.san@qq.com", "z***@qq.com"),
]


@pytest.mark.parametrize(("written", "masked"), MASKED, ids=[w for w, _ in MASKED])
def test_masked_alone_and_in_a_sentence(written: str, masked: str) -> None:
    assert mask_pii(written) == masked
    assert mask_pii(f"3号楼门口井盖松了，电话{written}，谢谢") == f"3号楼门口井盖松了，电话{masked}，谢谢"
    assert mask_pii(f"联系 {written} 张师傅") == f"联系 {masked} 张师傅"


# text that holds numbers but no personal data: never changed
KEPT = [
    "工单 #123 修好了吗",
    "查询工单#12345678",
    "2026-11-23",
    "2026-11-23 10:00",
    "2026.11.23",
    "2026/11/23",
    "20261123",
    "2026年11月23日上午9点",
    "3号楼2单元401",
    "15号楼3单元1201室",
    "3-5号楼",
    "13-15号楼之间",
    "物业费1.5元/平方米",
    "1.8元每平米",
    "共1500000元",
    "1000-2000元",
    "2019-2023年",
    "明天9:00-12:00停水",
    "营业时间0800-1200",
    "拨打12345热线",
    "报警110，火警119",
    "95598",
    "400-800-1234",
    "4008001234",
    "第三十七条",
    "第37条",
    "100平方米",
    "138****5678",
    "5号楼东侧路灯不亮",
]


@pytest.mark.parametrize("text", KEPT)
def test_not_personal_data_is_kept(text: str) -> None:
    assert mask_pii(text) == text


def test_a_date_or_room_next_to_a_phone_number_is_kept() -> None:
    assert mask_pii("2026-11-23 13812345678") == "2026-11-23 138****5678"
    assert mask_pii("3号楼2单元401 13812345678") == "3号楼2单元401 138****5678"
    assert mask_pii("400 800 1234 或 13812345678") == "400 800 1234 或 138****5678"
    assert mask_pii("电话：138 1234 5678转3") == "电话：138****5678转3"


def test_masking_twice_changes_nothing() -> None:
    once = mask_pii("电话138.1234.5678，身份证110101 19900307 123X，座机022-23456789")
    assert mask_pii(once) == once


def test_phone_numbers_for_staff_to_call_back() -> None:
    text = "电话138.1234.5678或+86 139 0000 1111，座机(022)2345-6789，身份证110101199003071234"
    assert phone_numbers(text) == ["13812345678", "13900001111", "02223456789"]  # never the ID number
    assert phone_numbers("3号楼2单元401，2026-11-23，#123") == []


PLACES = [
    ("3号楼门口", "示例社区", "示例社区 3号楼"),
    ("示例社区 3号楼门口", "示例社区", "示例社区 3号楼"),
    ("15号楼2单元401", "示例社区", "示例社区 15号楼"),
    ("三号楼2单元门口", "示例社区", "示例社区 三号楼"),
    ("7栋楼道", "", "7栋"),
    ("刘阿姨家门口", "示例社区", "示例社区"),
    ("示例社区 刘阿姨家门口", "示例社区", "示例社区"),
    ("刘阿姨家门口", "", ""),
    ("南门口", "示例社区", "示例社区 南门"),
    ("地下车库B区", "", "地下车库"),
]


@pytest.mark.parametrize(("place", "community", "coarse"), PLACES)
def test_coarse_place_keeps_the_community_and_building_only(place: str, community: str, coarse: str) -> None:
    assert coarse_place(place, community) == coarse


def test_coarse_coordinates_are_about_a_hundred_metres() -> None:
    assert coarse_coordinate(39.123456) == 39.123 and coarse_coordinate(117.6549) == 117.655
    assert coarse_coordinate(None) is None


def test_numbers_run_together_are_not_let_through() -> None:
    assert mask_pii("1381234567813912345678") == "138****5678"  # two mobiles without a space: hidden whole
    assert mask_pii("123X 13812345678") == "123X 138****5678"
    long_run = " ".join(["1"] * 5000) + " 13812345678"
    assert mask_pii(long_run).endswith(" 138****5678")  # the search per run is bounded, the result the same
