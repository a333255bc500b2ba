"""The workbench's one door into the rest of Doorstep: `Backoffice`, built by bot/app.py from the ports of
core/ports.py (the `Services` bundle, the `Library` of documents and the `FAQBook`), never from the classes
behind them.

What the workbench changes goes through those ports: ticket status, splits, notes and corrections through the
`TicketDesk`; bindings through `Groups`; notices through `Notices`; answered questions through the `GapLog`
and the `FAQBook`; documents through the `Library`. It reads the store's tables directly for its lists and
figures (a read model: tickets, reports, history, surveys, gaps) and writes only its own (`staff_*`).

Everything the workbench causes to be said goes out through the Sender: ticket news as the desk owes it,
notices through the notice service, answers to knowledge gaps and sign-in links as messages the desk owes
(`tell`), so a restart never loses one and never says one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from core.community import GroupInfo, Scope, Service, StaffMember
from core.ports import FAQBook, Library, Services
from store import Store


@dataclass(frozen=True)
class Told:
    """A message owed to a chat (a group, or a staff member's private chat)."""

    group: str
    text: str
    channel: str = ""
    mentions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backoffice:
    """What the workbench may use."""

    ports: Services
    library: Library
    faq: FAQBook
    store: Store  # read for the lists and figures; written only for the workbench's own tables
    public_url: str  # where staff reach this process (sign-in links point here), never a request's Host

    @property
    def tz(self) -> tzinfo:
        return self.ports.config.tz

    def now(self) -> datetime:
        return self.ports.clock.now()

    # --- staff and the community -----------------------------------------------------------------------

    def staff_member(self, staff_id: str) -> StaffMember | None:
        return self.ports.config.staff_member(staff_id)

    def staff(self) -> list[StaffMember]:
        return list(self.ports.config.staff_list)

    def scope(self, staff: StaffMember) -> Scope:
        return Scope.of(staff)

    def communities(self) -> dict[str, list[str]]:
        """Community -> its grids: those listed, then those the configured groups name."""
        config = self.ports.config
        out = {c.name: list(c.grids) for c in config.communities}
        for g in config.group_list:
            if g.community:
                grids = out.setdefault(g.community, [])
                if g.grid and g.grid not in grids:
                    grids.append(g.grid)
        return out

    def ticket_services(self) -> list[Service]:
        return list(self.ports.config.service_list)

    def group(self, group_id: str) -> GroupInfo:
        return self.ports.groups.resolve(group_id)

    # --- saying things ------------------------------------------------------------------------------------

    def channel_of(self, group: str) -> str:
        return self.ports.groups.channel_of(group)

    def tell(self, key: str, told: Told, ticket_id: int | None = None, kind: str = "answer") -> bool:
        """Owe a message (sent by the desk through the Sender, once, surviving a restart); False when one with
        this key was owed before. A private chat nobody has written in yet goes on the first channel (WeChat
        before the simulator)."""
        channel = (
            told.channel or self.channel_of(told.group) or next(iter(self.ports.sender.channel_names()), "")
        )
        return self.ports.tickets.tell(
            key,
            group=told.group,
            channel=channel,
            text=told.text,
            mentions=told.mentions,
            kind=kind,
            ticket_id=ticket_id,
        )
