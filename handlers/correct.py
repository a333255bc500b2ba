"""Staff correct a ticket's service and urgency from the chat: `/改派 #12 市政设施`, `/紧急 #12`, `/不紧急 #12`.

The ticket is re-routed at once (tickets/corrections.py) and the correction is kept as a labelled example of
the community; `doorstep train` (or the nightly retrain, `tickets.retrain_nightly`) folds it into the classifier.
"""

from __future__ import annotations

import re

from core.community import ROLES
from core.errors import CorrectionError
from core.handler import Context, Handler, Permission, Rule
from core.message import Reply
from core.registry import register

USAGE = (
    "纠正工单的类别或紧急程度（工作人员可用）：\n"
    "/改派 #12 市政设施 —— 把工单#12改派到【市政设施】（类别名或代码均可）\n"
    "/紧急 #12 —— 标为紧急\n"
    "/不紧急 #12 —— 取消紧急\n"
    "纠正会记下来，用于让我以后分得更准。"
)
_CMD = re.compile(r"^\s*[/／]\s*(改派|紧急|不紧急|取消紧急)(.*)$", re.S)
_ID = re.compile(r"[#＃]?\s*(\d{1,9})")


def _parse(text: str) -> tuple[str, str] | None:
    m = _CMD.match(text)
    return (m.group(1), m.group(2).strip()) if m else None


@register
class CorrectHandler(Handler):
    name = "correct"
    priority = 20
    rule = Rule(lambda c: _parse(c.text) is not None, "/改派 /紧急")
    permission = Permission(*ROLES)

    async def handle(self, ctx: Context) -> list[Reply]:
        parsed = _parse(ctx.text)
        assert parsed is not None and ctx.staff is not None  # the rule and the permission hold
        verb, rest = parsed
        m = _ID.match(rest)
        if m is None:
            return [ctx.reply(USAGE, kind="status")]
        ticket_id = int(m.group(1))
        target = rest[m.end() :].strip()
        svc = self.services
        try:
            if verb == "改派":
                if not target:
                    return [ctx.reply(USAGE, kind="status")]
                done = svc.tickets.correct(ticket_id, service_code=target, staff_id=ctx.staff.id)
            else:
                urgency = "urgent" if verb == "紧急" else "normal"
                done = svc.tickets.correct(ticket_id, urgency=urgency, staff_id=ctx.staff.id)
        except CorrectionError as e:
            return [ctx.reply(f"{e}\n{USAGE}", kind="refusal")]
        level = "紧急" if done.urgency == "urgent" else "一般"
        return [
            ctx.reply(
                f"已更正工单#{done.ticket_id}：【{done.service_name}】，紧急程度：{level}。已记下，用于改进自动分类。",
                kind="status",
            )
        ]
