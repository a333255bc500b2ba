"""`doorstep demo` end to end, as a user runs it: a real process, the real pipeline, its own fresh index."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_demo_runs_the_whole_scenario(tmp_path) -> None:
    env = {
        **os.environ,
        "DOORSTEP_INDEX": str(tmp_path / "index"),
        "DOORSTEP_LOG": "WARNING",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("DOORSTEP_DATA", None)
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    steps = out.split("\n== ")
    assert len(steps) == 9, out  # the header and eight steps
    answer, repeat, unknown, report, merge, notice, closed, mine = steps[1:]
    assert "来源：《示例社区服务目录》" in answer
    assert "已经回答过（回复给张师傅）" in repeat
    assert "没有找到答案" in unknown and "已转人工" in unknown
    assert (
        "已收到，工单号 #1，已转交【市政设施】" in report
        and "13812345678" not in report.split("家门口助手:")[-1]
    )
    assert "已合并到工单 #1" in merge
    assert "共2个群" in notice and notice.count("【社区通知】明天9点到12点停水") >= 3 and "已送达2" in notice
    assert closed.count("已处理完毕") == 2 and "重新打开" not in closed
    assert "#1 3号楼门口 井盖松了：已处理完毕" in mine
