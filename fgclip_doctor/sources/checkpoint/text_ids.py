"""The text side of a model folder, read from its JSON files only (no tokenizer is built):

    read_text_config(folder)    -> {"eos_token_id": (64, "base/config.json: text_config.eos_token_id"),
                                    "max_position_embeddings": (77, "...")}
    read_tokenizer_eos(folder)  -> (64, "base/tokenizer.json: <|endoftext|>") or None

The tokenizer's eos id is its `eos_token` (tokenizer_config.json / special_tokens_map.json)
looked up in tokenizer.json's added tokens, then its vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fgclip_doctor.sources.files import display_path


def _json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_text_config(folder: str | Path) -> dict[str, tuple[Any, str]]:
    path = Path(folder) / "config.json"
    doc = _json(path)
    if doc is None:
        return {}
    text = doc.get("text_config") if isinstance(doc.get("text_config"), dict) else doc
    out = {}
    for key in ("eos_token_id", "max_position_embeddings"):
        if isinstance(text.get(key), int):
            where = "text_config." if text is not doc else ""
            out[key] = (text[key], f"{display_path(path)}: {where}{key}")
    return out


def read_tokenizer_eos(folder: str | Path) -> tuple[int, str] | None:
    folder = Path(folder)
    eos = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        doc = _json(folder / name) or {}
        token = doc.get("eos_token")
        eos = token.get("content") if isinstance(token, dict) else token
        if isinstance(eos, str):
            break
    tok = _json(folder / "tokenizer.json")
    if not isinstance(eos, str) or tok is None:
        return None
    shown = f"{display_path(folder / 'tokenizer.json')}: {eos}"
    for added in tok.get("added_tokens") or []:
        if isinstance(added, dict) and added.get("content") == eos and isinstance(added.get("id"), int):
            return added["id"], shown
    vocab = (tok.get("model") or {}).get("vocab")
    if isinstance(vocab, dict) and isinstance(vocab.get(eos), int):
        return vocab[eos], shown
    return None
