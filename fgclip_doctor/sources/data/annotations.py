"""Quick facts about FG-CLIP annotations: how many records, how many valid boxes per image.

Counting is streamed (a 12M-line .jsonl is counted without parsing it); box statistics come
from the first `sample` records. Validity is the subject's one definition (fgclip.boxes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fgclip.data_files import data_files, layout
from fgclip_doctor.errors import DoctorInputError


@dataclass
class AnnotationStats:
    records: int
    sampled: int
    boxes_per_image: float  # mean valid boxes kept per image (capped at max_boxes) in the sample


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")  # a last line without newline


def annotation_stats(path: Path, max_boxes: int = 4, sample: int = 2000) -> AnnotationStats:
    """Records in FG-CLIP's data layouts (JSON arrays or JSON Lines; a file, a .txt list of them, a
    folder: fgclip.data_files), and mean valid boxes per image."""
    from fgclip.boxes import is_valid_box

    records, sampled_boxes, sampled = 0, 0, []
    for file in data_files(path):
        if layout(file) == "lines":
            records += _count_lines(file)
            with open(file, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if len(sampled) >= sample:
                        break
                    try:
                        sampled.append(json.loads(line))
                    except ValueError:
                        continue  # check-data reports malformed lines; here we only count
        else:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except ValueError as err:
                raise DoctorInputError(file, f"invalid JSON ({err})") from None
            data = data if isinstance(data, list) else [data]
            records += len(data)
            sampled.extend(data[: max(0, sample - len(sampled))])
    for rec in sampled:
        boxes = rec.get("bbox_info") if isinstance(rec, dict) else None
        valid = sum(1 for b in boxes or [] if isinstance(b, dict) and is_valid_box(b.get("bbox")))
        sampled_boxes += min(valid, max(max_boxes, 0))  # the loader keeps none at max_boxes <= 0 (fgclip/data.py)
    mean = sampled_boxes / len(sampled) if sampled else 0.0
    return AnnotationStats(records, len(sampled), mean)
