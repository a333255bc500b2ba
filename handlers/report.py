"""Complaints and hazards become tickets (see bot/tickets/desk.py for what happens after).

The report is committed before anything is said. Photos and a WeChat location from the same person in the
same group within a minute (before or after the words) join it. Without a place the bot asks once
("请问具体位置在哪里？") and files anyway when the wait is over. The acknowledgement ("已收到，工单号 #123，
已转交【市政设施】") or the merge notice is owed durably and sent by the desk.
"""

from __future__ import annotations

from bot.message import Reply
from bot.store.models import TicketReport
from bot.tickets import texts
from bot.tickets.desk import MEDIA_WINDOW_SECONDS, ReportDesk
from handlers.base import Context, Handler, Rule, register
from handlers.extract import clean_description, extract_place, normalise

UNAVAILABLE = "抱歉，工单登记暂时不可用，请直接联系网格员反映，谢谢！"
MAX_PLACE_ANSWER = 40  # a short reply to "where?" is the place, as written


def _needs_ticket(c: Context) -> bool:
    return c.classification.needs_ticket


@register
class ReportHandler(Handler):
    name = "report"
    priority = 40
    rule = Rule(_needs_ticket, "needs a ticket")

    def _desk(self) -> ReportDesk | None:
        desk = self.services.tickets
        return desk if isinstance(desk, ReportDesk) else None

    async def observe(self, ctx: Context) -> None:
        desk = self._desk()
        if desk is not None:
            desk.observe(ctx.message)

    async def handle(self, ctx: Context) -> list[Reply]:
        desk = self._desk()
        if desk is None:
            return [ctx.reply(UNAVAILABLE, kind="error")]
        msg = ctx.message
        timeout = self.services.config.main.tickets.place_timeout_seconds
        report = desk.open_report(msg, ctx.classification, ctx.text, place_timeout=timeout)
        if report is None:  # this message was already taken as a report
            return []
        now = self.services.clock.now()
        # at night nobody is asked "where?": the report is filed as it is and the grid follows up
        if not report.place and report.lat is None and not msg.private and ctx.quiet_until is None:
            self.services.conversations.open(
                self.name, msg.group, msg.sender, now, timeout, {"report_id": report.id, "mode": "place"}
            )
            return [ctx.reply(texts.ASK_PLACE, kind="ack")]
        self._file(desk, report.id, ctx)
        return []

    def _file(self, desk: ReportDesk, report_id: int, ctx: Context) -> None:
        desk.file(report_id, hold_until=ctx.quiet_until)
        desk.notifier.flush()
        msg = ctx.message
        if not msg.private:  # a photo or location in the next minute still joins the report
            self.services.conversations.open(
                self.name,
                msg.group,
                msg.sender,
                self.services.clock.now(),
                MEDIA_WINDOW_SECONDS,
                {"report_id": report_id, "mode": "media"},
            )

    async def followup(self, ctx: Context, state: dict[str, object]) -> list[Reply] | None:
        desk = self._desk()
        report_id = state.get("report_id")
        if desk is None or not isinstance(report_id, int):
            return None
        msg = ctx.message
        convs = self.services.conversations
        text = normalise(ctx.text)
        if state.get("mode") == "media":
            if (msg.images or msg.location) and len(text) <= 10:
                desk.add_media(report_id, msg)
                desk.forget_buffered(msg.group, msg.sender, msg.id)
                return []
            convs.close(msg.group, msg.sender)
            return None
        # waiting for the place
        if msg.images and not text and msg.location is None:
            desk.add_media(report_id, msg)
            desk.forget_buffered(msg.group, msg.sender, msg.id)
            return []  # still waiting for the place
        place = ctx.classification.location or extract_place(text) or ""
        c = ctx.classification
        if msg.location is not None:
            desk.add_media(report_id, msg)
            desk.forget_buffered(msg.group, msg.sender, msg.id)
            desk.set_place(report_id, place, msg.location)
        elif place and (not c.needs_ticket or len(text) <= len(place) + 6):  # the answer, not a new report
            desk.set_place(report_id, place)
            if c.needs_ticket:  # "楼道灯不亮": the answer names the problem too
                self._join(desk, report_id, ctx.text)
        elif (
            text
            and len(text) <= MAX_PLACE_ANSWER
            and not c.needs_ticket
            and c.intent not in ("question", "command")
        ):
            desk.set_place(report_id, text)
        else:  # not an answer to "where?": file what we have and treat this message as new
            convs.close(msg.group, msg.sender)
            desk.file(report_id)
            desk.notifier.flush()
            return None
        convs.close(msg.group, msg.sender)
        self._file(desk, report_id, ctx)
        return []

    def _join(self, desk: ReportDesk, report_id: int, answer: str) -> None:
        """The report is the first words and the answer together, classified again as a whole, so that the chat
        files what `doorstep classify` says of the problem (not what the vague first message suggested)."""
        with desk.store.session() as s:
            r = s.get(TicketReport, report_id)
            if r is None:
                return
            joined = f"{r.text}，{answer.strip()}"
            c = self.services.classifier.classify(joined)
            if not c.needs_ticket:
                return
            r.text = joined[:4000]
            r.description = (c.description or clean_description(joined))[:2000]
            r.service_code = desk.service(c.service_code).service_code
            r.intent = c.intent
            if r.urgency != "urgent":  # a danger in either message stays a danger
                r.urgency = c.urgency

    async def expire(self, state: dict[str, object]) -> list[Reply]:
        desk = self._desk()
        report_id = state.get("report_id")
        if desk is not None and isinstance(report_id, int) and state.get("mode") == "place":
            desk.file(report_id)  # no place given in time: file anyway, the grid follows up
            desk.notifier.flush()
        return []
