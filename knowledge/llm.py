"""Optional: an OpenAI-compatible chat model (DeepSeek, Qwen, vLLM, Ollama ...) through LangChain writes the
answer from the retrieved passages only, citing them as [1], [2]. Any error, timeout, or an answer that cites
nothing returns None, and the service falls back to the extractive answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from knowledge.chunks import Chunk

log = logging.getLogger(__name__)

SYSTEM = (
    "你是社区微信群里的助手，回答居民关于社区政策和服务的问题。只能根据下面编号的资料回答，不能使用资料以外的知识。"
    "用简体中文，口语化，不超过120字。每句依据的资料用方括号编号标注，如[1]。"
    "如果资料里没有答案，只回答“资料中没有相关内容”。"
)
NO_ANSWER = ("资料中没有", "没有相关内容", "无法回答")
_CITE = re.compile(r"\[(\d+)\]")


class LLMWriter:
    def __init__(
        self,
        base_url: str = "",
        api_key: str = "",
        model: str = "",
        timeout: float = 8.0,
        chat_model: Any = None,
    ) -> None:
        if chat_model is None:
            from langchain_openai import ChatOpenAI

            chat_model = ChatOpenAI(
                base_url=base_url,
                api_key=api_key or "none",  # type: ignore[arg-type]
                model=model,
                timeout=timeout,
                max_retries=0,
                temperature=0.1,
            )
        self.chat = chat_model

    def write(self, question: str, passages: Sequence[Chunk]) -> tuple[str, list[int]] | None:
        """The answer text (citation marks removed) and the indexes of the passages it cites, or None."""
        material = "\n\n".join(f"[{i + 1}]《{c.title}》{c.locator}\n{c.text}" for i, c in enumerate(passages))
        messages = [("system", SYSTEM), ("human", f"资料：\n{material}\n\n居民的问题：{question}")]
        try:
            reply = self.chat.invoke(messages)
        except Exception as e:  # network, timeout, bad key: the extractive answer stands in
            log.warning("LLM answer failed (%s: %s); using the extractive answer", type(e).__name__, e)
            return None
        text = str(getattr(reply, "content", reply)).strip()
        cited = sorted({int(n) - 1 for n in _CITE.findall(text) if 0 < int(n) <= len(passages)})
        if not text or any(p in text for p in NO_ANSWER) or not cited:
            log.info("LLM answer rejected (no citation or no answer): %r", text[:80])
            return None
        return _CITE.sub("", text).strip(), cited
