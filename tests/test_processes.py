"""The real `doorstep serve` and `doorstep backend` processes (tests/procs.py), as a supervisor and a user run
them: restarts on a data directory that holds messages, a restart on the same port right after SIGKILL,
/health within seconds on a first start, GeoReport v2 at /open311/v2 (also for a third-party client), webhooks
from the embedded backend, UTF-8 form data, and the fault run (backend down, bot killed halfway)."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from backend.testing import free_port
from store.models import InboundMessage, Ticket
from tests.procs import KEY, ROOT, Procs, Serve, wait_for
from tests.reports import PROBLEMS

pytestmark = pytest.mark.timeout(240)


def reports(prefix: str, groups: list[str], per_group: int, start: int = 0) -> list[dict[str, str]]:
    """Distinct problems at distinct places (never merged), one reporter each."""
    out = []
    for g, group in enumerate(groups):
        for i in range(per_group):
            n = start + g * per_group + i
            out.append(
                {
                    "group": group,
                    "sender": f"{prefix}_{n:03d}",
                    "text": f"{n + 1}号楼{i + 1}单元门口{PROBLEMS[n % len(PROBLEMS)]}",
                }
            )
    return out


def post_all(bot: Serve, batch: list[dict[str, str]]) -> None:
    for r in batch:
        bot.post(r["group"], r["sender"], r["text"], mentions_bot=True)


def count(db: Path, model: Any) -> int:
    engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
    try:
        with engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


# --- item 1: message identity survives a restart --------------------------------------------------------


def test_restart_on_a_data_dir_with_messages_records_and_files_every_new_one(procs: Procs) -> None:
    groups = ["进程测试群A", "进程测试群B"]
    first, second = reports("r1", groups, 3), reports("r1", groups, 3, start=6)
    bot = procs.serve().start()
    post_all(bot, first)
    wait_for("the first reports acknowledged", lambda: len(bot.acks(groups)) == 6, 60)
    bot.stop()
    bot.move_to(free_port())  # the port is item 2's test; this one is about the data directory
    bot.start()  # the same data directory: the store holds the first 6 messages
    post_all(bot, second)
    wait_for("every reporter acknowledged", lambda: len(bot.acks(groups)) == 12, 60)
    db = bot.workdir / "data" / "doorstep.db"
    assert count(db, InboundMessage) == 12, "every message posted after the restart is recorded"
    assert count(db, Ticket) == 12
    assert set(bot.acks(groups).values()) == {1}


# --- item 2: restart on the same port right after a crash -------------------------------------------------


def test_restart_on_the_same_port_right_after_sigkill(procs: Procs) -> None:
    bot = procs.serve().start()
    with httpx.Client(base_url=bot.url) as keep_alive:  # connections open at the kill: TIME_WAIT on the port
        for _ in range(3):
            assert keep_alive.get("/health").status_code == 200
        bot.kill()
    bot.start(timeout=15)  # at once, on the same port
    assert bot.health()["status"] == "ok"


def test_a_port_another_server_listens_on_is_one_clear_line(procs: Procs) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        bot = procs.serve(port=other.getsockname()[1])
        with pytest.raises(AssertionError, match="exited with 2") as e:
            bot.start(timeout=30)
    assert "is already in use" in str(e.value) and "Traceback" not in str(e.value)


# --- item 3: HTTP and /health at once on a first start ------------------------------------------------------


def test_first_start_answers_health_within_15_s_while_the_sample_is_ingested(procs: Procs) -> None:
    sample = json.dumps([str(ROOT / "knowledge" / "sample")])
    bot = procs.serve(DOORSTEP_KNOWLEDGE_PATHS=sample).start(timeout=15)  # an empty index: the bundled sample
    index = bot.health()["parts"]["index"]
    assert index["status"] == "loading", index
    bot.post("进程测试群C", "r3_001", "8号楼门口井盖松了", mentions_bot=True)  # a report is filed meanwhile
    wait_for("the report acknowledged", lambda: bot.acks(["进程测试群C"]), 30)
    bot.post("进程测试群C", "r3_002", "小门 请问助老食堂几点开饭？", mentions_bot=True)

    def reply() -> dict[str, Any] | None:
        return next(
            (e for e in bot.messages("进程测试群C") if e["from_bot"] and "r3_002" in e["mentions"]), None
        )

    answer = wait_for("the answer to the question", reply, 30)
    if bot.health()["parts"]["index"]["status"] == "loading":  # still ingesting: so it was when it answered
        assert "知识库正在准备中" in answer["text"] and "%" in answer["text"], answer["text"]

    ingesting = wait_for(  # the sample is being ingested: /health says how far
        "ingestion in /health", lambda: bot.health()["parts"]["index"].get("ingesting"), 60
    )
    assert {"progress", "chunks_done", "chunks_total"} <= set(ingesting) and ingesting["files"] >= 5
    assert "first start: ingesting the bundled knowledge" in bot.log_path.read_text(errors="replace")


# --- item 4: `doorstep backend` at /open311/v2, for any GeoReport v2 client ---------------------------------


def test_standalone_backend_serves_georeport_v2_for_a_third_party_client(procs: Procs) -> None:
    import requests
    from georeport import GeoReport  # the PyPI GeoReport v2 client, not ours

    be = procs.backend().start()
    base = f"{be.url}/open311/v2"
    client = GeoReport(base, jurisdiction="doorstep.local", api_key=KEY)
    codes = {s["service_code"] for s in client.get_service_list()}
    assert {"property_repair", "municipal_facility", "ebike_fire_safety", "other"} <= codes
    assert [a["code"] for a in client.get_service_definition("municipal_facility")["attributes"]][:2] == [
        "community",
        "grid",
    ]
    # georeport 0.3.1 reads only; the create is the spec's form POST, with requests (its own HTTP library)
    created = requests.post(
        f"{base}/requests.json",
        data={
            "api_key": client.api_key,
            "jurisdiction_id": client.jurisdiction,
            "service_code": "municipal_facility",
            "address_string": "幸福里3号楼门口",
            "description": "井盖松动，晚上看不清",
        },
        timeout=10,
    )
    assert created.status_code == 200, created.text
    rid = created.json()[0]["service_request_id"]
    got = client.get_service_request(rid)
    assert (got["service_code"], got["status"], got["description"]) == (
        "municipal_facility",
        "open",
        "井盖松动，晚上看不清",
    )
    assert [r["service_request_id"] for r in client.get_service_requests(service_request_id=rid)] == [rid]
    xml = GeoReport(base, jurisdiction="doorstep.local", output_format="xml")
    assert {s["service_code"] for s in xml.get_service_list()} == codes  # the spec's XML element names
    refused = requests.post(f"{base}/requests.json", data={"api_key": "wrong", "service_code": "other"})
    assert refused.status_code == 403 and refused.json()[0]["code"] == 403
    assert requests.get(f"{be.url}/services.json").status_code == 404  # not at the root


# --- items 5 and 6: the embedded backend's webhooks, UTF-8 form data ----------------------------------------


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, proc_config: Path) -> Iterator[Serve]:
    ps = Procs(tmp_path_factory.mktemp("embedded"), proc_config)
    try:
        yield ps.serve().start()
    finally:
        ps.close()
        print(ps.logs())


def filed(bot: Serve, group: str, sender: str, text: str) -> str:
    """Post a report and wait for its ticket on the embedded backend; its service_request_id."""
    bot.post(group, sender, text, mentions_bot=True)
    wait_for("the acknowledgement", lambda: bot.acks([group])[sender], 30)

    def remote() -> str | None:
        # with the key: the public list shows only coarse places, and the words name the exact one
        for r in bot.http.get("/open311/v2/requests.json", params={"api_key": KEY}).json():
            if r["description"] and text[:6] in r["description"]:
                return str(r["service_request_id"])
        return None

    return str(wait_for("the ticket on the embedded backend", remote, 30))


def said_to(bot: Serve, group: str, sender: str, marker: str) -> dict[str, Any] | None:
    return next(
        (e for e in bot.messages(group) if e["from_bot"] and sender in e["mentions"] and marker in e["text"]),
        None,
    )


def test_embedded_backend_pushes_the_status_change_by_webhook(embedded: Serve) -> None:
    from backend.models import WebhookDelivery

    rid = filed(embedded, "进程测试群D", "r5_001", "9号楼东侧路灯不亮了")
    r = embedded.http.post(
        f"/open311/v2/requests/{rid}/status.json",
        data={"api_key": KEY, "status": "closed", "status_notes": "已更换灯泡", "agency_responsible": "街道"},
    )
    assert r.status_code == 200, r.text
    engine = create_engine(f"sqlite:///{embedded.workdir / 'data' / 'open311.db'}", poolclass=NullPool)

    def update_delivered() -> bool:
        with engine.connect() as c:
            rows = c.execute(select(WebhookDelivery.payload, WebhookDelivery.state)).all()
        return any(
            p["type"] == "request.updated" and p["service_request_id"] == rid and st == "delivered"
            for p, st in rows
        )

    try:  # the poll runs every 5 minutes: only the webhook can deliver this within the wait
        wait_for("the webhook delivery of the update", update_delivered, 30)
    finally:
        engine.dispose()
    told = wait_for("the group told", lambda: said_to(embedded, "进程测试群D", "r5_001", "已处理完毕"), 30)
    assert "已更换灯泡" in told["text"]


def test_raw_utf8_form_data_reaches_the_group_intact(embedded: Serve) -> None:
    rid = filed(embedded, "进程测试群E", "r6_001", "10号楼门口井盖没了")
    # exactly what `curl -d status_notes=已补装新井盖` sends: raw UTF-8 bytes, not percent-escaped
    body = f"api_key={KEY}&status=closed&status_notes=已补装新井盖&agency_responsible=城管科".encode()
    r = embedded.http.post(
        f"/open311/v2/requests/{rid}/status.json",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text
    [doc] = embedded.http.get(f"/open311/v2/requests/{rid}.json").json()
    assert (doc["status_notes"], doc["agency_responsible"]) == ("已补装新井盖", "城管科")
    told = wait_for("the group told", lambda: said_to(embedded, "进程测试群E", "r6_001", "已处理完毕"), 30)
    assert "已补装新井盖" in told["text"], told["text"]


# --- the fault run --------------------------------------------------------------------------------------------


def test_backend_down_bot_killed_halfway_restarted_at_once_backend_back(procs: Procs) -> None:
    """24 reports from 3 groups while the external backend is down; the bot is SIGKILLed halfway and started
    again at once on the same port; 12 more reports; then the backend comes up. Exactly one ticket and one
    acknowledgement per report."""
    groups = ["故障进程群1", "故障进程群2", "故障进程群3"]
    msgs = reports("f", groups, 8)
    first = [m for m in msgs if int(m["sender"][2:]) % 8 < 4]  # the first half of each group
    rest = [m for m in msgs if m not in first]
    be = procs.backend()  # not started: the backend is down
    bot = procs.serve(DOORSTEP_OPEN311_URL=f"{be.url}/open311/v2", DOORSTEP_OPEN311_API_KEY=KEY).start()
    post_all(bot, first)
    wait_for("some acknowledgements", lambda: len(bot.acks(groups)) >= 4, 60)
    bot.kill()  # in the middle: some reports acknowledged, some recorded only
    bot.start(timeout=15)  # at once, on the same port
    post_all(bot, rest)
    wait_for("every reporter acknowledged", lambda: len(bot.acks(groups)) == 24, 90)
    be.start()

    def tickets() -> list[dict[str, Any]]:
        return list(be.http.get("/open311/v2/requests.json").json())

    wait_for("24 tickets on the backend", lambda: len(tickets()) >= 24, 60)
    wait_for("the bot settled", bot.settled, 60)  # nothing owed or unsent: nothing more can come
    final = tickets()
    assert len(final) == 24
    assert len({t["description"] for t in final}) == 24, "one ticket per report, none twice"
    acks = bot.acks(groups)
    assert set(acks) == {m["sender"] for m in msgs} and set(acks.values()) == {1}, Counter(acks.values())
    assert not [e for g in groups for e in bot.messages(g) if e["from_bot"] and "已合并" in e["text"]]
