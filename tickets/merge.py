"""Whether a new report is the same problem at the same place as an open ticket: the merge rule.

A wrong merge is worse than a missed one: the second reporter is told that their problem is fixed when
somebody else's is, and their own problem is silently lost. So a merge needs every part to agree:
- the same service (the caller's query) and community;
- the same place: when both name a place in words, the words decide (a building and a finer spot within it
  agree, "3号楼门口" and "3号楼东侧" do not) and coordinates never override them, since a shared or default
  location says little; coordinates decide only when one side has no place in words;
- the same problem: when both name something the service covers (its keywords in services.yaml: 井盖, 路灯 …),
  they must name the same thing; otherwise their wording must be alike.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from nlp.extract import normalise, place_key, place_position

TEXT_SIMILARITY = 0.5  # bigram overlap above which two descriptions tell the same problem
NEARBY_METRES = 60.0


@dataclass(frozen=True)
class Sighting:
    """What one report, or the ticket it became, says about where and what."""

    place: str
    lat: float | None
    lon: float | None
    description: str

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None


def _bigrams(text: str) -> set[str]:
    t = re.sub(r"[\W_\d]+", "", normalise(text))
    return {t[i : i + 2] for i in range(len(t) - 1)} or ({t} if t else set())


def similarity(a: str, b: str) -> float:
    x, y = _bigrams(a), _bigrams(b)
    return len(x & y) / len(x | y) if x and y else 0.0


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p = math.pi / 180
    a = (
        0.5
        - math.cos((lat2 - lat1) * p) / 2
        + math.cos(lat1 * p) * math.cos(lat2 * p) * (1 - math.cos((lon2 - lon1) * p)) / 2
    )
    return 12_742_000 * math.asin(math.sqrt(max(0.0, a)))


def same_place_in_words(a: str, b: str) -> bool:
    ka, kb = place_key(a), place_key(b)
    if not ka or not kb:
        return False
    short, long = sorted((ka, kb), key=len)
    # the same place, or a finer place within it ("3号楼" and "3号楼2单元"); never "1号楼" in "21号楼"
    if not (ka == kb or (len(short) >= 3 and long.startswith(short))):
        return False
    pa, pb = place_position(a), place_position(b)
    return not pa or not pb or pa == pb  # "3号楼门口" and "3号楼" agree; "门口" and "东侧" do not


def same_place(a: Sighting, b: Sighting) -> bool | None:
    """True or False when the two can be compared; None when neither words nor coordinates tell."""
    if a.place and b.place:
        return same_place_in_words(a.place, b.place)
    if a.has_coordinates and b.has_coordinates:
        assert a.lat is not None and a.lon is not None and b.lat is not None and b.lon is not None
        return metres(a.lat, a.lon, b.lat, b.lon) <= NEARBY_METRES
    return None


def same_problem(a: str, b: str, things: list[str]) -> bool:
    """`things`: what the service covers (its keywords); two reports naming different ones differ."""
    na, nb = normalise(a), normalise(b)
    ta = {t for t in things if t and t in na}
    tb = {t for t in things if t and t in nb}
    if ta and tb:
        return bool(ta & tb)
    return similarity(a, b) >= TEXT_SIMILARITY
