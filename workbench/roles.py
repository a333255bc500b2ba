"""What each role sees and does in the workbench, and which tickets, groups and questions are theirs.

Roles come from config/staff.yaml only. The reach of a staff member is the notice scope of bot/groups.py: a
管理员 everything, a 网格员 their grids, other roles their community. Tickets and questions from groups no
community claims yet (unbound) are the 管理员's.
"""

from __future__ import annotations

from core.community import Scope, StaffMember

ALL = frozenset({"管理员", "社区工作者", "网格员", "物业"})

# section or action -> the roles that may use it
ALLOWED: dict[str, frozenset[str]] = {
    "tickets": ALL,  # see and work tickets: status with a note, re-route, split, notes
    "knowledge": frozenset(
        {"管理员", "社区工作者", "网格员"}
    ),  # knowledge gaps, answering them as FAQ entries
    "documents": frozenset({"管理员", "社区工作者"}),  # upload and remove documents
    "notices": ALL,  # as /通知 in chat: every role within its reach
    "groups": ALL,
    "bind": frozenset({"管理员", "社区工作者", "网格员"}),  # as /绑定: 物业 may not bind
    "figures": ALL,
    "audit": frozenset({"管理员"}),
}

SECTIONS = [  # the navigation, in order: (section, path, label)
    ("tickets", "/staff/tickets", "工单"),
    ("knowledge", "/staff/knowledge", "知识库"),
    ("notices", "/staff/notices", "通知"),
    ("groups", "/staff/groups", "群"),
    ("figures", "/staff/figures", "统计"),
    ("audit", "/staff/audit", "操作记录"),
]


def may(staff: StaffMember, what: str) -> bool:
    return bool(ALLOWED.get(what, frozenset()) & set(staff.roles))


def reaches(staff: StaffMember, community: str, grid: str) -> bool:
    """Whether a ticket, group or question of this community and grid is this staff member's."""
    scope = Scope.of(staff)
    if scope.everything:
        return True
    return bool(community) and scope.allows(community, grid)


def nav(staff: StaffMember) -> list[tuple[str, str, str]]:
    return [s for s in SECTIONS if may(staff, s[0])]


def role_label(staff: StaffMember) -> str:
    scope = Scope.of(staff)
    return f"{'、'.join(staff.roles)}（{scope.describe()}）"
