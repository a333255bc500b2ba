"""`doorstep train`: fold the staff's corrections into the classifier.

Exports every correction in the store (as `/改派` and `/紧急` in the chat or `POST /admin/tickets/{id}/correction`
made them) to DATA_DIR/classify_corrections.jsonl and trains the model on it once (saved in the data directory),
so that the next `doorstep classify` and a running bot (which notices the file within seconds) use the new
model."""

from __future__ import annotations

import argparse
import json

from bot.config import Config, load_config
from bot.retrain import retrain as retrain_with
from store import Store


def retrain(config: Config) -> dict[str, object]:
    store = Store(config.database_url)
    try:
        store.migrate()
        return retrain_with(config, store)
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    out = retrain(load_config())
    if getattr(args, "json", False):
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(
            f"已纳入 {out['corrections']} 条人工纠正，模型已重新训练（{out['train_seconds']} 秒）：{out['file']}"
        )
    return 0
