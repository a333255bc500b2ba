"""The staff workbench (GET /staff/, CONTRACT.md "The staff workbench"): tickets, knowledge gaps, notices,
groups and figures for 社区工作者, 网格员, 物业 and 管理员, signed in with a password or a one-time link.

A part like the channels and handlers: it imports the core's ports and reads the store, has its own settings
(`workbench:`, workbench/settings.py) and declares its routes (`Workbench.routes()`), which the web shell
mounts. bot/app.py builds it (docs/architecture.md).
"""
