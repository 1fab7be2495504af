"""Deterministic synthetic data in FG-CLIP's annotation format.

    python -m fgclip.synthetic --out DIR [--n-train 512] [--n-val 64]
                               [--image-size 64] [--seed 0] [--no-base] [--base-steps 300]

writes
    DIR/images/{split}_{i:05d}.png   RGB, image_size x image_size
    DIR/train.jsonl, DIR/val.jsonl   one FG-CLIP record per line
    DIR/tokenizer/                   word-level tokenizer (fgclip.tokenizer)

Each image is a plain or lightly textured grey background with 2-4 coloured
shapes, one per cell of a 2x2 layout whose split point is jittered, so shapes
never overlap. A shape has colour (10), kind (6), size (2) and a position
(9, from the box centre on a 3x3 grid): over a thousand possible box captions,
so a box cannot be identified by any single attribute.

Records use FG-CLIP's keys; ``f_path`` is relative to DIR (use DIR as
``--image_folder``). Every box has 10 hard negatives that each change one or
two attributes of the positive caption.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PRETRAIN_STEPS = 300  # the tiny base's pretraining steps (fgclip.base_model.pretrain_base)

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 60, 180),
    "orange": (250, 140, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "pink": (250, 150, 200),
    "cyan": (40, 210, 220),
}
KINDS = ("circle", "square", "triangle", "diamond", "cross", "ring")
SIZES = ("small", "large")
# 3x3 grid over the box centre -> (short phrase, long phrase)
POSITIONS = {
    "top left": ("at the top left", "in the top left corner"),
    "top": ("at the top", "near the top edge"),
    "top right": ("at the top right", "in the top right corner"),
    "left": ("on the left", "near the left edge"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "near the right edge"),
    "bottom left": ("at the bottom left", "in the bottom left corner"),
    "bottom": ("at the bottom", "near the bottom edge"),
    "bottom right": ("at the bottom right", "in the bottom right corner"),
}
_POS_GRID = (("top left", "top", "top right"), ("left", "center", "right"), ("bottom left", "bottom", "bottom right"))
ATTRS = ("colour", "kind", "size", "position")
_CHOICES = {"colour": tuple(COLOURS), "kind": KINDS, "size": SIZES, "position": tuple(POSITIONS)}
NUM_HARD_NEGATIVES = 10
N_TRAIN, N_VAL = 512, 64  # records of the default dataset (the preset's cache, the CLI's defaults)
# Fixed words of the long caption templates; part of the vocabulary.
EXTRA_TEXT = (
    "a photo of a picture with shapes on plain textured grey background there is and "
    "one two three four located of the image"
)


def short_expr(s: dict) -> str:
    """Box caption, e.g. 'small red circle at the top left'."""
    return f"{s['size']} {s['colour']} {s['kind']} {POSITIONS[s['position']][0]}"


def long_expr(s: dict) -> str:
    """Longer phrasing of the same box."""
    return f"a {s['size']} {s['colour']} {s['kind']} located {POSITIONS[s['position']][1]} of the image"


def hard_negatives(s: dict, rng: np.random.Generator, n: int = NUM_HARD_NEGATIVES) -> list[str]:
    """n distinct captions, each changing one or two attributes of shape ``s``."""
    pos, out = short_expr(s), []
    while len(out) < n:
        first = int(rng.integers(4))  # change one attribute, or two distinct ones
        which = [first] if rng.random() < 0.5 else [first, (first + 1 + int(rng.integers(3))) % 4]
        changed = dict(s)
        for a in (ATTRS[j] for j in which):
            others = [v for v in _CHOICES[a] if v != s[a]]
            changed[a] = others[int(rng.integers(len(others)))]
        cap = short_expr(changed)
        if cap != pos and cap not in out:
            out.append(cap)
    return out


def _layout(rng: np.random.Generator, size: int) -> dict:
    """Sample one image: background and 2-4 shapes with pixel boxes (all randomness here)."""
    # jittered split point of the 2x2 layout
    sx = int(size * rng.uniform(0.4, 0.6))
    sy = int(size * rng.uniform(0.4, 0.6))
    cells = [(0, 0, sx, sy), (sx, 0, size, sy), (0, sy, sx, size), (sx, sy, size, size)]
    n = int(rng.integers(2, 5))
    shapes = []
    for c in sorted(rng.choice(4, size=n, replace=False).tolist()):
        cx1, cy1, cx2, cy2 = cells[c]
        cw, ch = cx2 - cx1 - 2, cy2 - cy1 - 2  # 1 px margin each side keeps shapes apart
        sz = SIZES[int(rng.integers(2))]
        # side as a fraction of the image (not the cell) so "small"/"large" never overlap
        frac = rng.uniform(0.14, 0.2) if sz == "small" else rng.uniform(0.28, 0.36)
        side = max(4, min(cw, ch, int(size * frac)))
        x = cx1 + 1 + int(rng.integers(0, cw - side + 1))
        y = cy1 + 1 + int(rng.integers(0, ch - side + 1))
        shapes.append(
            {
                "colour": list(COLOURS)[int(rng.integers(len(COLOURS)))],
                "kind": KINDS[int(rng.integers(len(KINDS)))],
                "size": sz,
                "xy": (x, y, x + side, y + side),
            }
        )
    bg = int(rng.integers(95, 160))
    textured = bool(rng.random() < 0.5)
    return {"bg": bg, "textured": textured, "noise_seed": int(rng.integers(2**31)), "shapes": shapes}


def _draw_mask(kind: str, xy, size: int) -> Image.Image:
    """L-mode mask of one shape inside the square xy = (x1, y1, x2, y2) (x2/y2 exclusive)."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    x1, y1, x2, y2 = xy[0], xy[1], xy[2] - 1, xy[3] - 1  # PIL boxes are inclusive
    cx, cy, w = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1
    if kind == "circle":
        d.ellipse((x1, y1, x2, y2), fill=255)
    elif kind == "square":
        d.rectangle((x1, y1, x2, y2), fill=255)
    elif kind == "triangle":
        d.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=255)
    elif kind == "diamond":
        d.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=255)
    elif kind == "cross":
        t = max(1.0, w / 6)
        d.rectangle((x1, cy - t, x2, cy + t), fill=255)
        d.rectangle((cx - t, y1, cx + t, y2), fill=255)
    elif kind == "ring":
        d.ellipse((x1, y1, x2, y2), outline=255, width=max(2, round(w / 5)))
    return m


def _render(lay: dict, size: int) -> tuple[Image.Image, list[list[float]]]:
    """Draw the image; return it and each shape's tight normalised box (from its mask)."""
    px = np.full((size, size, 3), lay["bg"], np.float32)
    if lay["textured"]:  # light per-pixel noise plus a soft vertical gradient
        nrng = np.random.default_rng(lay["noise_seed"])
        px += nrng.normal(0, 6, (size, size, 1)) + np.linspace(-10, 10, size)[:, None, None]
    img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")
    boxes = []
    for s in lay["shapes"]:
        mask = _draw_mask(s["kind"], s["xy"], size)
        img.paste(COLOURS[s["colour"]], (0, 0), mask)
        x1, y1, x2, y2 = mask.getbbox()  # tight, x2/y2 exclusive
        boxes.append([round(v / size, 4) for v in (x1, y1, x2, y2)])
    return img, boxes


def _position(box) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return _POS_GRID[min(2, int(cy * 3))][min(2, int(cx * 3))]


def _record(lay: dict, boxes, f_path: str, rng: np.random.Generator) -> dict:
    info, shapes = [], []
    for s, box in zip(lay["shapes"], boxes):
        attrs = {"colour": s["colour"], "kind": s["kind"], "size": s["size"], "position": _position(box)}
        shapes.append(attrs)
        negs = hard_negatives(attrs, rng)
        info.append(
            {
                "bbox": box,
                "short_expr": short_expr(attrs),
                "long_expr": long_expr(attrs),
                "flag_short_neg": 1,
                "short_expr_negs": {str(i): t for i, t in enumerate(negs)},
            }
        )
    n = ("one", "two", "three", "four")[len(shapes) - 1]
    bg = "textured grey" if lay["textured"] else "plain grey"
    parts = [f"a {short_expr(a)}" for a in shapes]
    caption = (
        f"a picture with {n} shapes on a {bg} background. there is " + ", ".join(parts[:-1]) + f" and {parts[-1]}."
    )
    names = [f"a {a['colour']} {a['kind']}" for a in shapes]
    short = ", ".join(names[:-1]) + f" and {names[-1]}"
    return {"f_path": f_path, "caption": caption, "short_caption": short, "bbox_info": info}


def all_words() -> list[str]:
    """Every string the generator can emit (so the vocabulary does not depend on n)."""
    words = list(COLOURS) + list(KINDS) + list(SIZES) + [EXTRA_TEXT]
    words += [p for pair in POSITIONS.values() for p in pair]
    return words


def generate(
    out_dir,
    n_train: int = N_TRAIN,
    n_val: int = N_VAL,
    image_size: int = 64,
    seed: int = 0,
    *,
    images: bool = True,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write the synthetic dataset to ``out_dir``; return the paths written.

    Record i of a split depends only on (seed, split, i), so a larger ``n``
    extends a smaller one. ``images=False`` skips saving the PNGs (shapes are
    still rendered for their tight boxes, so the records are identical).
    ``progress(1)`` is called after each record. Returns {"root", "images", "train", "val",
    "tokenizer"} as Paths.
    """
    from fgclip.tokenizer import build_word_tokenizer

    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    texts = all_words()
    paths = {"root": out, "images": img_dir}
    for split_id, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        with open(out / f"{split}.jsonl", "w") as f:
            for i in range(n):
                rng = np.random.default_rng([seed, split_id, i])
                lay = _layout(rng, image_size)
                img, boxes = _render(lay, image_size)
                f_path = f"images/{split}_{i:05d}.png"
                if images:
                    img.save(out / f_path, compress_level=1)
                rec = _record(lay, boxes, f_path, rng)
                texts += [rec["caption"], rec["short_caption"]]
                f.write(json.dumps(rec) + "\n")
                if progress is not None:
                    progress(1)
        paths[split] = out / f"{split}.jsonl"
    build_word_tokenizer(texts, out / "tokenizer")
    paths["tokenizer"] = out / "tokenizer"
    return paths


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fgclip.synthetic", description="Write a synthetic FG-CLIP dataset.")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--n-val", type=int, default=N_VAL)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-base", action="store_true", help="skip pretraining the base model")
    ap.add_argument("--base-steps", type=int, default=PRETRAIN_STEPS, help="optimizer steps of the base's pretraining")
    args = ap.parse_args(argv)
    needs = ("transformers",) if args.no_base else ("transformers", "torch")  # the tokenizer; the base
    if any(importlib.util.find_spec(name) is None for name in needs):
        checkout = Path(__file__).resolve().parents[1]  # fgclip-doctor installs from its checkout
        ap.error(f'needs {" and ".join(needs)} (the subject\'s extra): pip install -e "{checkout}[subject]"')
    from fgclip.progress import Bar, quiet_libraries, shown

    base = "" if args.no_base else f" and a tiny base ({args.base_steps} steps)"
    print(f"generating {args.n_train}+{args.n_val} records{base} into {shown(args.out)}", flush=True)
    t0 = time.time()
    with quiet_libraries(), Bar(args.n_train + args.n_val + (0 if args.no_base else args.base_steps)) as bar:
        bar.stage("synthetic data")
        paths = generate(args.out, args.n_train, args.n_val, args.image_size, args.seed, progress=bar.advance)
        if not args.no_base:
            bar.stage("tiny base")  # before the import: torch and transformers take seconds to load
            from fgclip.base_model import pretrain_base  # lazy: written elsewhere, heavy

            pretrain_base(args.out, args.out / "base", steps=args.base_steps, progress=bar.advance)
    made = "" if args.no_base else f", the tiny base to {shown(paths['root'] / 'base')}"
    print(f"wrote {args.n_train}+{args.n_val} records to {shown(paths['root'])}{made} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
