"""Scale-out benchmark (issue 7): one bot process, then two, on the same machine, in one run.

Each process is a real `tests/scaleout_support.py` bot (the App with a spool channel, knowledge loaded), on one
store (PostgreSQL when $DOORSTEP_TEST_PG_URL is set, else a SQLite file), with the built-in backend as an
in-thread server. Groups are split between the processes (`DOORSTEP_PROCESS__GROUPS`).

- reports/s: N reports fed at once across the groups, until every reporter is acknowledged and every ticket is
  on the backend (the outbox shared through claims);
- ask latency p50/p95: questions to the processes' groups, from the message written to the answer sent;
- ratio two/one for both.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.scaleout_support import ACK, OPEN311_KEY, BotProcess, acked, env_for, wait_for  # noqa: E402

PROBLEMS = ["井盖松了", "路灯不亮了", "垃圾好几天没人清运", "楼道灯坏了", "下水道堵了", "电梯坏了"]
QUESTIONS = ["助老食堂几点开饭", "垃圾分类怎么投放", "居住证怎么办理", "社区医院周末开门吗"]
GROUPS = [f"压测群{g:02d}" for g in range(20)]


@contextmanager
def _store_url(tmp: Path, tag: str) -> Iterator[tuple[str, str]]:
    base = os.environ.get("DOORSTEP_TEST_PG_URL", "")
    if not base:
        yield f"sqlite:///{tmp / f'{tag}.db'}", "sqlite"
        return
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}", "application_name": schema})
    try:
        yield url.render_as_string(hide_password=False), "postgresql"
    finally:
        with admin.begin() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :s"),
                {"s": schema},
            )
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def _round(
    n_proc: int, n_reports: int, n_questions: int, tmp: Path, index_seed: Path | None
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from backend import Backend
    from backend.models import ServiceRequest
    from backend.testing import free_port, running_backend
    from bot.builtin_backend import backend_settings
    from bot.config import load_config

    work = tmp / f"p{n_proc}"
    port = free_port()
    be = Backend(
        backend_settings(
            load_config(ROOT / "config" / "doorstep.yaml"),
            f"sqlite:///{work}.open311.db",
            api_keys=[OPEN311_KEY],
        )
    )
    split = [GROUPS[i::n_proc] for i in range(n_proc)]
    owner = {g: i for i, gs in enumerate(split) for g in gs}
    with (
        _store_url(tmp, f"p{n_proc}") as (db_url, engine),
        running_backend(be, port=port),
    ):
        bots = []
        for i, groups in enumerate(split):
            data = work / f"bot{i}"
            if index_seed is not None:  # each process its own copy of one ingested index (embedded Chroma)
                shutil.copytree(index_seed, data / "index")
            env = env_for(
                f"bench-{i}",
                groups,
                db_url=db_url,
                backend_url=f"http://127.0.0.1:{port}/open311/v2",
                data=data,
            )
            bots.append(BotProcess(data, env, knowledge=True))
        try:
            for b in bots:
                b.start(timeout=300)
            reports = [
                {
                    "id": f"r{n}",
                    "group": GROUPS[n % len(GROUPS)],
                    "sender": f"u{n}",
                    "sender_name": f"居民{n}",
                    "text": f"{n + 1}号楼{n % 4 + 1}单元门口{PROBLEMS[n % len(PROBLEMS)]}",
                }
                for n in range(n_reports)
            ]

            def backend_count() -> int:
                with be.sessions() as s:
                    return int(s.scalar(select(func.count()).select_from(ServiceRequest)) or 0)

            t0 = time.perf_counter()
            for i, b in enumerate(bots):
                b.feed(r for r in reports if owner[r["group"]] == i)
            wait_for(
                "reports acknowledged and filed",
                lambda: sum(len(acked(b.sent())) for b in bots) >= n_reports and backend_count() >= n_reports,
                timeout=600,
            )
            elapsed = time.perf_counter() - t0

            latencies: list[float] = []
            for k in range(
                n_questions // len(GROUPS) + 1
            ):  # one question per group at a time, all groups at once
                batch = [
                    {
                        "id": f"q{k}-{g}",
                        "group": group,
                        "sender": f"asker{g}",
                        "sender_name": "居民",
                        "text": QUESTIONS[(k + g) % len(QUESTIONS)],
                    }
                    for g, group in enumerate(GROUPS)
                ][: max(0, n_questions - k * len(GROUPS))]
                if not batch:
                    break
                before = {i: len(b.sent()) for i, b in enumerate(bots)}
                asked = time.time()
                for i, b in enumerate(bots):
                    b.feed(q for q in batch if owner[q["group"]] == i)
                want = {q["group"] for q in batch}

                def answers(before: dict[int, int] = before, want: set[str] = want) -> dict[str, float]:
                    got: dict[str, float] = {}
                    for i, b in enumerate(bots):
                        for m in b.sent()[before[i] :]:
                            if m["group"] in want and not m["text"].startswith(ACK):
                                got.setdefault(m["group"], m["t"])
                    return got

                def all_answered(want: set[str] = want) -> bool:
                    return len(answers()) >= len(want)

                wait_for("answers", all_answered, timeout=300, every=0.01)
                latencies += [t - asked for t in answers().values()]
        finally:
            for b in bots:
                b.kill()
            be.engine.dispose()
    return {
        "processes": n_proc,
        "store": engine,
        "reports": n_reports,
        "reports_per_s": n_reports / elapsed,
        "questions": len(latencies),
        "ask_p50_s": _percentile(latencies, 50),
        "ask_p95_s": _percentile(latencies, 95),
    }


def _seed_index(tmp: Path) -> Path | None:
    """Ingest the sample knowledge once into an index the processes copy; None if knowledge is unavailable."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = tmp / "seed"
    old = os.environ.get("DOORSTEP_DATA")
    os.environ["DOORSTEP_DATA"] = str(data)
    try:
        from bot.config import load_config
        from bot.runtime import open_knowledge_for

        kb = open_knowledge_for(load_config(ROOT / "config" / "doorstep.yaml"))
        if kb is None:
            return None
        close = getattr(kb, "close", None)
        if callable(close):
            close()
    finally:
        if old is None:
            os.environ.pop("DOORSTEP_DATA", None)
        else:
            os.environ["DOORSTEP_DATA"] = old
    return data / "index" if (data / "index").exists() else None


def run(quick: bool = False) -> dict[str, Any]:
    n_reports, n_questions = (60, 20) if quick else (200, 60)
    with tempfile.TemporaryDirectory(prefix="doorstep-scaleout-") as d:
        tmp = Path(d)
        seed = _seed_index(tmp)
        one = _round(1, n_reports, n_questions, tmp, seed)
        two = _round(2, n_reports, n_questions, tmp, seed)
    summary = {
        "store": one["store"],
        "reports_per_s_one": one["reports_per_s"],
        "reports_per_s_two": two["reports_per_s"],
        "reports_per_s_ratio_two_over_one": two["reports_per_s"] / one["reports_per_s"],
        "ask_p50_s_one": one["ask_p50_s"],
        "ask_p50_s_two": two["ask_p50_s"],
        "ask_p50_ratio_two_over_one": two["ask_p50_s"] / one["ask_p50_s"],
        "ask_p95_s_one": one["ask_p95_s"],
        "ask_p95_s_two": two["ask_p95_s"],
    }
    return {
        "summary": summary,
        "table": [one, two],
        "note": "same machine: two processes share its CPUs, the store and the backend",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), ensure_ascii=False, indent=2))
