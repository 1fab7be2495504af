"""FG-CLIP annotations -> tensors.

A compact take on FG-CLIP's ``LazySupervisedBboxDataset``. Each record is
    {"f_path": str, "caption": str, "short_caption": str,
     "bbox_info": [{"bbox": [x1, y1, x2, y2] in [0, 1], "short_expr": str,
                    "long_expr": str, "flag_short_neg": 0/1,
                    "short_expr_negs": {"0": str, ..., "9": str}}, ...]}

Differences from the original, on purpose:
  * boxes failing ``fgclip.boxes.box_problem`` are dropped and counted in
    ``dataset.dropped_boxes`` (FG-CLIP raised ValueError on inverted boxes and
    silently trained on the rest);
  * hard negatives are a fixed [K, 1+N, L] block with a ``hard_valid`` mask,
    so batches stack without ragged lists.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fgclip import faults
from fgclip.boxes import box_problem
from fgclip.data_files import data_files, layout

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_MASK63 = (1 << 63) - 1


def read_annotations(path) -> list[dict]:
    """Load records the way FG-CLIP's --data_path is read (fgclip.data_files): a file holding one
    JSON array or JSON Lines (told apart by its first byte), a ``.txt`` list of such files, or a
    folder of ``*.json`` then ``*.jsonl`` files."""
    records: list = []
    for file in data_files(path):
        with open(file, encoding="utf-8") as f:
            if layout(file) == "array":
                records += json.load(f)
            else:
                records += [json.loads(line) for line in f if line.strip()]
    return records


def caption_id(text: str) -> int:
    """Stable positive 63-bit id of a caption (blake2b of stripped, lower-cased text); never 0.

    Used to spot duplicate box captions inside a batch (they are not true
    negatives of each other); 0 is reserved for padding rows.
    """
    h = hashlib.blake2b(text.strip().lower().encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(h, "big") & _MASK63) or 1


def _negatives(box: dict) -> list[str]:
    """Hard-negative rewrites of a box in key order ("0", "1", ...); accepts a dict or a list."""
    negs = box.get("short_expr_negs") or {}
    if isinstance(negs, dict):
        keys = list(negs)
        if all(isinstance(k, str) and k.isdigit() for k in keys):
            keys.sort(key=int)
        negs = [negs[k] for k in keys]
    return [n for n in negs if isinstance(n, str)]


class FGCLIPDataset(torch.utils.data.Dataset):
    """FG-CLIP records as fixed-shape tensors (see ``__getitem__``).

    ``tokenizer`` is a HF tokenizer or a path for ``AutoTokenizer``. Invalid
    boxes are dropped once, here, and counted in ``self.dropped_boxes``
    (Counter keyed by ``fgclip.boxes.BOX_PROBLEMS`` names plus "over_max" for
    valid boxes beyond ``max_boxes``).
    """

    def __init__(
        self,
        data_path,
        image_folder,
        tokenizer,
        image_size=224,
        max_boxes=4,
        base_seq_length=77,
        max_seq_length=248,
        add_box_loss=True,
        use_hard_neg=True,
        num_hard_negatives=10,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ):
        if isinstance(tokenizer, (str, Path)):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer
        self.image_folder = Path(image_folder)
        self.image_size, self.max_boxes = image_size, max_boxes
        self.base_seq_length, self.max_seq_length = base_seq_length, max_seq_length
        self.add_box_loss, self.use_hard_neg = add_box_loss, use_hard_neg
        self.num_hard_negatives = num_hard_negatives
        self.mean = np.asarray(image_mean, np.float32)  # [3], broadcast over HWC
        self.std = np.asarray(image_std, np.float32)

        self.records = read_annotations(data_path)
        # Scan every box once: keep (box, entry) for valid ones, count the rest.
        self.dropped_boxes: Counter = Counter()
        self.kept: list[list[tuple[list[float], dict]]] = []
        for rec in self.records:
            kept = []
            for entry in rec.get("bbox_info") or []:
                box = entry.get("bbox") if isinstance(entry, dict) else None
                problem = box_problem(box)
                if problem is not None:
                    self.dropped_boxes[problem] += 1
                elif len(kept) >= max_boxes:
                    self.dropped_boxes["over_max"] += 1
                else:
                    # within tol of [0, 1]: clamp the tiny excess away
                    kept.append(([min(1.0, max(0.0, float(v))) for v in box], entry))
            self.kept.append(kept)

    def __len__(self) -> int:
        return len(self.records)

    def _tok(self, texts: list[str], length: int) -> torch.Tensor:
        # [len(texts), length] long; truncation keeps eos (post-processor counts it)
        if faults.active("eos-cut"):  # casebook: tokenise in full, then cut (EOS lost from long rows)
            ids = self.tokenizer(texts, padding="longest", return_tensors="pt").input_ids[:, :length]
            pad = self.tokenizer.pad_token_id or 0
            return torch.nn.functional.pad(ids, (0, length - ids.shape[1]), value=pad)
        return self.tokenizer(
            texts, max_length=length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids

    def _image(self, f_path: str) -> torch.Tensor:
        img = Image.open(self.image_folder / f_path).convert("RGB")
        img = img.resize((self.image_size, self.image_size), Image.BICUBIC)
        x = np.asarray(img, np.float32) / 255.0  # [S, S, 3] in [0, 1]
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, S, S]

    def __getitem__(self, i: int) -> dict:
        """One sample. K = max_boxes, N = num_hard_negatives, L = base_seq_length:

        pixel_values [3,S,S] float32, text_long [max_seq_length] long,
        text_short [L] long ("a photo of " + short_caption), and unless both
        add_box_loss and use_hard_neg are False:
        boxes [K,4] float32 (zero rows = padding), box_nums [] long,
        box_texts [K,L] long, box_caption_ids [K] long (0 = padding),
        hard_texts [K,1+N,L] long (row 0 = positive), hard_valid [K] bool.
        """
        rec = self.records[i]
        short = "a photo of " + rec.get("short_caption", "")
        out = {
            "pixel_values": self._image(rec["f_path"]),
            "text_long": self._tok([rec.get("caption", "")], self.max_seq_length)[0],
        }
        if not (self.add_box_loss or self.use_hard_neg):
            out["text_short"] = self._tok([short], self.base_seq_length)[0]
            return out

        K, N, L = self.max_boxes, self.num_hard_negatives, self.base_seq_length
        kept = self.kept[i]
        boxes = torch.zeros(K, 4, dtype=torch.float32)
        ids = torch.zeros(K, dtype=torch.long)
        captions = [""] * K  # padding rows tokenize the empty string
        hard = [""] * (K * (1 + N))  # flattened [K, 1+N]
        valid = torch.zeros(K, dtype=torch.bool)
        for k, (box, entry) in enumerate(kept):
            cap = entry.get("short_expr") or entry.get("long_expr") or ""
            boxes[k] = torch.tensor(box)
            captions[k], ids[k] = cap, caption_id(cap)
            negs = _negatives(entry)
            if entry.get("flag_short_neg") == 1 and len(negs) >= N:
                hard[k * (1 + N) : (k + 1) * (1 + N)] = [cap] + negs[:N]
                valid[k] = True
        # one tokenizer call for every L-length text: [1 + K + K*(1+N), L]
        tok = self._tok([short] + captions + hard, L)
        out.update(
            text_short=tok[0],
            boxes=boxes,
            box_nums=torch.tensor(len(kept), dtype=torch.long),
            box_texts=tok[1 : 1 + K],  # [K, L]
            box_caption_ids=ids,
            hard_texts=tok[1 + K :].view(K, 1 + N, L),
            hard_valid=valid,
        )
        return out


def collate(instances: list[dict]) -> dict:
    """Stack every key of a list of samples into a batch: [B, ...]."""
    return {k: torch.stack([inst[k] for inst in instances]) for k in instances[0]}
