"""Knowledge files uploaded through the admin API, confined to `<data>/uploads/`.

A request names two things that could become paths: the file's name and its community. The name is cut to its
last component and cleaned; the community must be one of the configuration's (so it is a directory name we
chose, never a request's); the final path is checked to lie inside the upload area. The file is written to a
staging directory (`uploads/.incoming/<random>/`) and moved into place (one rename on the same file system)
only when ingestion succeeded, so a refused or failed upload leaves nothing behind and never replaces the
copy of an earlier good version.
"""

from __future__ import annotations

import logging
import os
import shutil
import unicodedata
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bot.config import Config
from bot.knowledge_loading import KnowledgeSlot
from core.errors import KnowledgeUnavailable, UploadRefused
from core.ports import DocumentView, Ingested, Passage

if TYPE_CHECKING:
    from knowledge.service import KnowledgeService

__all__ = ["DocumentLibrary", "UploadArea", "UploadRefused", "check_community", "upload_name"]

log = logging.getLogger(__name__)
MAX_UPLOAD = 20 * 1024 * 1024

MAX_NAME_BYTES = 200  # file systems allow 255 bytes; a Chinese character is 3
GLOBAL_FOLDER = "_all"


def known_communities(config: Config) -> set[str]:
    """The communities of config/groups.yaml (listed, or named by a group)."""
    groups = config.groups
    return {c.name for c in groups.communities} | {g.community for g in groups.groups if g.community}


def check_community(config: Config, community: str) -> str:
    """The community as given when the configuration knows it ("" is global); else refused (422)."""
    c = community.strip()
    if not c:
        return ""
    known = known_communities(config)
    if c not in known or c.startswith(".") or any(ch in c for ch in "/\\\0"):
        listed = "、".join(sorted(known)) or "（没有配置社区）"
        raise UploadRefused(
            422,
            f"没有这个社区：“{c[:64]}”。社区必须是 config/groups.yaml 里的：{listed}",
            f"community {c[:64]!r} is not in config/groups.yaml",
        )
    return c


def upload_name(raw: str | None) -> str:
    """The file's own name: the last path component (either slash), printable characters only, at most
    MAX_NAME_BYTES of UTF-8 with the extension kept; refused (400) when nothing usable is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and unicodedata.category(ch) != "Cf").strip()
    if not name or name in (".", ".."):
        raise UploadRefused(400, "文件名不能为空", "empty file name")
    if name.startswith("."):
        raise UploadRefused(400, f"文件名不能以“.”开头：{name[:64]}", "hidden file name")
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    while len((stem + tail).encode("utf-8")) > MAX_NAME_BYTES and stem:
        stem = stem[:-1]
    if not stem or len(tail.encode("utf-8")) > MAX_NAME_BYTES // 2:
        raise UploadRefused(400, "文件名太长了，请改短一些再上传", "file name too long")
    return stem + tail


class UploadArea:
    """`<data>/uploads`: kept copies in `<community or _all>/<name>`, staging in `.incoming/`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise UploadRefused(400, "文件路径不合法", "path outside the upload area")
        return resolved

    def stage(self, name: str, data: bytes) -> Path:
        """Write the data under a fresh staging directory; the file keeps its name (ingestion names the
        document after it)."""
        folder = self._inside(self.root / ".incoming" / uuid.uuid4().hex)
        folder.mkdir(parents=True)
        path = self._inside(folder / name)
        with path.open("xb") as f:
            f.write(data)
        return path

    def keep(self, staged: Path, community: str) -> Path:
        """Move a staged file into place (replacing an earlier copy of the same document atomically)."""
        folder = self._inside(self.root / (community or GLOBAL_FOLDER))
        folder.mkdir(parents=True, exist_ok=True)
        final = self._inside(folder / staged.name)
        os.replace(staged, final)
        self.discard(staged)
        return final

    def discard(self, staged: Path) -> None:
        """Remove a staging directory and whatever is left in it."""
        folder = staged.parent
        if folder.parent == self.root / ".incoming":
            shutil.rmtree(folder, ignore_errors=True)

    def remove_copy(self, recorded: str) -> None:
        """Delete the kept copy of a removed document, when the recorded path is one of ours."""
        if not recorded:
            return
        path = Path(recorded).resolve()
        if path.is_relative_to(self.root) and ".incoming" not in path.relative_to(self.root).parts:
            path.unlink(missing_ok=True)


# --- the documents, as the admin API and the staff workbench manage them (the `Library` port) -----------------


class DocumentLibrary:
    """Implements core.ports.Library on the knowledge service of this process and `<data>/uploads/`."""

    def __init__(self, knowledge: KnowledgeSlot, config: Config) -> None:
        self.knowledge = knowledge
        self.config = config
        self.area = UploadArea(config.data_dir / "uploads")

    def service(self) -> KnowledgeService:
        k = self.knowledge.full()
        if k is None:
            raise KnowledgeUnavailable(self.knowledge.preparing() or "知识库没有加载")
        return k

    def documents(self) -> list[DocumentView]:
        from knowledge.store import doc_key

        return [
            DocumentView(
                key=doc_key(f["community"], f["source"]),
                source=f["source"],
                community=f["community"],
                title=f["title"],
                kind=f["kind"],
                chunks=int(f["chunks"]),
            )
            for f in self.service().stats().get("files", [])
        ]

    def passages(self, key: str) -> list[Passage]:
        meta = self.service().index.meta
        ids = meta.chunk_ids(key)
        found = meta.chunks(ids)
        return [
            Passage(locator=c.locator, title=c.title, text=c.text, kind=c.kind)
            for c in (found[i] for i in ids if i in found)
        ]

    def upload(
        self, filename: str | None, stream: BinaryIO, community: str, *, via: str = "admin API"
    ) -> Ingested:
        """Check everything the request names before a byte is written, stage the file, ingest it, and keep it
        in `<data>/uploads/<community>/` only when ingestion succeeded. Raises UploadRefused (nothing is left
        behind)."""
        from knowledge.loaders import SUPPORTED
        from knowledge.store import doc_key

        knowledge = self.service()
        comm = check_community(self.config, community)
        name = upload_name(filename)
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED:
            listed = "、".join(sorted(x[1:] for x in SUPPORTED))
            raise UploadRefused(
                400,
                f"不支持的文件类型“{suffix or name}”，支持：{listed}",
                f"unsupported file type {suffix or '(none)'}",
            )
        data = stream.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise UploadRefused(
                413,
                f"文件太大（上限{MAX_UPLOAD // 1048576}MB）",
                f"file too large (the limit is {MAX_UPLOAD // 1048576} MB)",
            )
        staged = self.area.stage(name, data)
        log.info("%s: ingesting %s (%s, %d bytes)", via, name, comm or "all", len(data))
        try:
            report = knowledge.ingest([staged], community=comm)
            result = next((f for f in report.files if f.path == staged), None)
            if result is None or result.status == "failed":
                reason = result.reason if result else "nothing to ingest"
                raise UploadRefused(400, f"“{name}”导入失败：{reason}", reason)
            key = doc_key(result.community, name)
            if (
                result.community != comm
            ):  # a JSON catalog that names its community itself: that one must exist
                try:
                    check_community(self.config, result.community)
                except UploadRefused:
                    knowledge.remove([key])
                    raise
            final = self.area.keep(staged, result.community)
            knowledge.index.meta.touch_doc(key, str(final))
        finally:
            self.area.discard(staged)
        log.info("%s ingested %s (%s): %s", via, name, result.community or "all", result.status)
        return Ingested(
            key=key,
            source=result.source,
            status=result.status,
            community=result.community,
            chunks=result.chunks,
            reason=result.reason,
            warnings=tuple(result.warnings),
            summary=report.summary(),
        )

    def remove(self, source: str, community: str | None) -> list[str]:
        """Remove a document by file name (every community's, or the one given; "" is the global one), with
        the copy kept at upload. The keys removed (empty: no such document)."""
        from knowledge.store import doc_key

        knowledge = self.service()
        name = Path(source).name
        target = name if community is None else doc_key(community.strip(), name)
        docs = {d.key: d for d in knowledge.index.meta.docs_by_source(target)}
        removed: list[str] = knowledge.remove([target])
        for key in removed:
            if key in docs:
                self.area.remove_copy(docs[key].path)
        return removed
