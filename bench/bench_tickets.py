"""Tickets benchmark, each figure beside a baseline measured in the same run.

- pipeline: reports per second from the group message to the ticket on the built-in backend (a real uvicorn
  server on loopback): router, classifier, report desk (committed before the ack), durable outbox with
  idempotency keys. Baseline: the same number of POSTs straight from the GeoReport client to the same backend,
  so the ratio says what the durability and the pipeline cost over the bare API.
- classifier: latency p50/p95 per message over the dev set, and its accuracy, beside a keyword baseline (the
  foundation's interim classifier: fixed word lists).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.reports import PROBLEMS  # noqa: E402


class _KeywordBaseline:
    """The foundation's interim classifier (fixed word lists), the baseline for latency and accuracy."""

    HAZARD = ("井盖", "电线", "燃气", "煤气", "着火", "冒烟", "塌", "漏电", "坠物")
    COMPLAINT = ("坏了", "不亮", "堵", "漏水", "太吵", "噪音", "乱停", "没人管", "垃圾", "投诉", "报修")

    def classify(self, text: str) -> tuple[str, str | None]:
        t = text.strip()
        if t.startswith(("/", "／", "帮助", "查询工单", "我的工单")):
            return "command", None
        if any(k in t for k in self.HAZARD):
            return "hazard", "public_safety"
        if any(k in t for k in self.COMPLAINT):
            return "complaint", "other"
        if any(k in t for k in ("?", "？", "吗", "怎么", "哪里", "几点", "多少", "请问")):
            return "question", None
        return "chitchat", None


def _percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p * (len(s) - 1))))]


def classifier_figures(config: Any) -> dict[str, Any]:
    import json

    import handlers.classifier as classifier_module
    from handlers.classifier import load_classifier

    dev = [
        json.loads(x)
        for x in (ROOT / "tests" / "data" / "classify_dev.jsonl").read_text("utf-8").splitlines()
    ]
    classifier_module._CACHE.clear()  # measure the training at start-up too
    t0 = time.perf_counter()
    model = load_classifier(config)
    train_s = time.perf_counter() - t0
    base = _KeywordBaseline()
    ours_ms, base_ms = [], []
    ok_ours = ok_base = 0
    for r in dev * 3:
        t = time.perf_counter()
        c = model.classify(r["text"])
        ours_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        bi, bs = base.classify(r["text"])
        base_ms.append((time.perf_counter() - t) * 1000)
        ok_ours += c.intent == r["intent"]
        ok_base += bi == r["intent"]
    n = len(dev) * 3
    p50, p95 = _percentile(ours_ms, 0.5), _percentile(ours_ms, 0.95)
    b50 = _percentile(base_ms, 0.5)
    return {
        "messages": len(dev),
        "train_seconds": round(train_s, 2),
        "p50_ms": round(p50, 3),
        "p95_ms": round(p95, 3),
        "baseline_p50_ms": round(b50, 4),
        "latency_ratio_p50": round(p50 / b50, 1) if b50 else None,
        "intent_accuracy_in_sample": round(ok_ours / n, 3),
        "baseline_intent_accuracy": round(ok_base / n, 3),
    }


async def _pipeline(config_path: Path, url: str, n: int) -> dict[str, Any]:
    from bot.app import App
    from bot.channels.base import Channel, Inbox
    from bot.clock import ManualClock
    from bot.config import load_config
    from bot.message import Message
    from bot.tickets.client import GeoReportClient
    from bot.tickets.desk import ReportDesk

    class NullChannel(Channel):
        name = "bench"

        def __init__(self) -> None:
            super().__init__("doorstep-bot")
            self.sent = 0

        async def start(self, inbox: Inbox) -> None: ...

        async def stop(self) -> None: ...

        async def send_text(self, group: str, text: str, mentions: Sequence[str] = ()) -> None:
            self.sent += 1

        async def send_image(self, group: str, image: bytes, name: str = "image.png") -> None: ...

    os.environ.update(
        DOORSTEP_OPEN311_URL=url,
        DOORSTEP_POLICY__USER_PER_MINUTE="100000",
        DOORSTEP_POLICY__GROUP_PER_MINUTE="100000",
        DOORSTEP_POLICY__QUIET_HOURS="null",
    )
    cfg = load_config(config_path)
    clock = ManualClock()  # the throttle's waits pass in virtual time; the figure is wall time
    ch = NullChannel()
    app = App(cfg, clock=clock, channels={"bench": ch})
    desk = app.services.tickets
    assert isinstance(desk, ReportDesk)
    desk.outbox.concurrency = 8
    await app.start(background=False)
    groups = [g.id for g in cfg.groups.groups]
    msgs = [
        Message(
            id=f"bench-{i}",
            channel="bench",
            group=groups[i % len(groups)],
            sender=f"u{i}",
            sender_name=f"居民{i}",
            text=f"{i + 1}号楼{i % 6 + 1}单元门口{PROBLEMS[i % len(PROBLEMS)]}",
            mentions_bot=True,
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for m in msgs:
        await app.handle(m)
    t_intake = time.perf_counter() - t0
    while desk.outbox.counts().get("done", 0) < n:
        await app.tick()
    await app.sender.drain()
    total = time.perf_counter() - t0
    await app.stop()

    client = GeoReportClient(url, cfg.ticket_api_key)  # generated in this run's data directory
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with sem:
            await client.create(
                service_code="sanitation",
                description=f"基线{i}",
                address=f"{i}号楼",
                idempotency_key=f"baseline-{i}",
            )

    await asyncio.gather(*(one(i) for i in range(n)))
    base = time.perf_counter() - t0
    await client.aclose()
    return {
        "reports": n,
        "acks_sent": ch.sent,
        "intake_reports_per_s": round(n / t_intake, 1),
        "reports_per_s": round(n / total, 1),
        "baseline_direct_posts_per_s": round(n / base, 1),
        "ratio_to_baseline": round((n / total) / (n / base), 2),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from backend import Backend, BackendSettings
    from backend.testing import running_backend
    from bot.config import load_config

    work = Path(tempfile.mkdtemp(prefix="bench-tickets-"))
    saved = dict(os.environ)
    os.environ["DOORSTEP_DATA"] = str(work / "data")
    try:
        config_path = ROOT / "config" / "doorstep.yaml"
        config = load_config(config_path)
        be = Backend(BackendSettings.from_config(config, f"sqlite:///{work / 'open311.db'}"))
        with running_backend(be) as url:
            pipeline = asyncio.run(_pipeline(config_path, url, 200 if quick else 1000))
        be.engine.dispose()
        classifier = classifier_figures(config)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {
        "pipeline": pipeline,
        "classifier": classifier,
        "summary": {
            "reports/s end to end": pipeline["reports_per_s"],
            "direct POSTs/s (baseline)": pipeline["baseline_direct_posts_per_s"],
            "pipeline / baseline": pipeline["ratio_to_baseline"],
            "classifier p50 ms": classifier["p50_ms"],
            "classifier p95 ms": classifier["p95_ms"],
            "keyword baseline p50 ms": classifier["baseline_p50_ms"],
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), ensure_ascii=False, indent=2))
