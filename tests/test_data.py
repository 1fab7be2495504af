"""fgclip.synthetic + fgclip.data: synthetic FG-CLIP records -> fixed-shape tensors."""

import json
import math
from collections import Counter

import pytest
import torch
from PIL import Image

from fgclip.boxes import box_problem
from fgclip.data import FGCLIPDataset, caption_id, collate, read_annotations
from fgclip.synthetic import generate

N_TRAIN, N_VAL, SIZE = 16, 4, 32


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn"), n_train=N_TRAIN, n_val=N_VAL, image_size=SIZE, seed=0)


def test_generate_writes_fgclip_format(syn):
    recs = read_annotations(syn["train"])
    assert len(recs) == N_TRAIN and len(read_annotations(syn["val"])) == N_VAL
    assert len(read_annotations(syn["root"])) == N_TRAIN + N_VAL  # folder of jsonl files
    for r in recs:
        assert set(r) == {"f_path", "caption", "short_caption", "bbox_info"}
        img = Image.open(syn["root"] / r["f_path"])
        assert img.mode == "RGB" and img.size == (SIZE, SIZE)
        assert 2 <= len(r["bbox_info"]) <= 4
        for b in r["bbox_info"]:
            assert box_problem(b["bbox"]) is None
            assert b["flag_short_neg"] == 1
            negs = list(b["short_expr_negs"].values())
            assert list(b["short_expr_negs"]) == [str(i) for i in range(10)]
            assert len(set(negs)) == 10 and b["short_expr"] not in negs
            assert b["short_expr"] in r["caption"]
        # shapes never overlap
        bxs = [b["bbox"] for b in r["bbox_info"]]
        for i in range(len(bxs)):
            for j in range(i + 1, len(bxs)):
                a, c = bxs[i], bxs[j]
                assert a[2] <= c[0] or c[2] <= a[0] or a[3] <= c[1] or c[3] <= a[1]


def test_hard_negatives_change_one_or_two_attributes(syn):
    for r in read_annotations(syn["train"]):
        for b in r["bbox_info"]:
            pos = b["short_expr"].split(" ", 3)  # size colour kind position-phrase
            for neg in b["short_expr_negs"].values():
                diff = sum(x != y for x, y in zip(pos, neg.split(" ", 3)))
                assert 1 <= diff <= 2, (b["short_expr"], neg)


def test_deterministic(tmp_path, syn):
    again = generate(tmp_path / "again", n_train=N_TRAIN, n_val=N_VAL, image_size=SIZE, seed=0)
    assert again["train"].read_bytes() == syn["train"].read_bytes()
    assert (again["images"] / "train_00003.png").read_bytes() == (syn["images"] / "train_00003.png").read_bytes()
    other = generate(tmp_path / "other", n_train=N_TRAIN, n_val=0, image_size=SIZE, seed=1, images=False)
    assert other["train"].read_bytes() != syn["train"].read_bytes()


def test_many_distinct_box_captions(tmp_path):
    p = generate(tmp_path, n_train=200, n_val=0, image_size=SIZE, seed=0, images=False)
    recs = read_annotations(p["train"])
    caps = {b["short_expr"] for r in recs for b in r["bbox_info"]}
    assert len(caps) > 100
    # colour alone does not identify a box: each colour appears in several captions
    by_colour = Counter(c.split()[1] for c in caps)
    assert len(by_colour) >= 8 and min(by_colour.values()) > 3


def test_caption_id():
    assert caption_id("Small red circle ") == caption_id("small red circle")
    assert caption_id("small red circle") != caption_id("small blue circle")
    for t in ["", "a", "small red circle at the top left"]:
        assert 0 < caption_id(t) < 2**63


def test_dataset_shapes(syn):
    ds = FGCLIPDataset(syn["train"], syn["root"], syn["tokenizer"], image_size=24)
    assert len(ds) == N_TRAIN and sum(ds.dropped_boxes.values()) == 0
    s = ds[0]
    K, L = 4, 77
    expect = {
        "pixel_values": ((3, 24, 24), torch.float32),
        "text_long": ((248,), torch.long),
        "text_short": ((L,), torch.long),
        "boxes": ((K, 4), torch.float32),
        "box_nums": ((), torch.long),
        "box_texts": ((K, L), torch.long),
        "box_caption_ids": ((K,), torch.long),
        "hard_texts": ((K, 11, L), torch.long),
        "hard_valid": ((K,), torch.bool),
    }
    assert set(s) == set(expect)
    for k, (shape, dtype) in expect.items():
        assert tuple(s[k].shape) == shape and s[k].dtype == dtype, k
    rec, n = ds.records[0], int(s["box_nums"])
    assert n == len(rec["bbox_info"])
    assert s["hard_valid"].tolist() == [True] * n + [False] * (K - n)
    assert s["boxes"][n:].eq(0).all() and s["box_caption_ids"][n:].eq(0).all()
    assert s["box_caption_ids"][0] == caption_id(rec["bbox_info"][0]["short_expr"])
    tok = ds.tokenizer
    assert (
        s["text_short"].tolist()
        == tok("a photo of " + rec["short_caption"], max_length=L, padding="max_length", truncation=True).input_ids
    )
    assert torch.equal(s["hard_texts"][:n, 0], s["box_texts"][:n])  # row 0 = positive
    assert torch.equal(s["box_texts"][n:], s["hard_texts"][n:, 0])  # padding = ""
    assert abs(s["pixel_values"].mean().item()) < 3


def test_no_box_keys(syn):
    ds = FGCLIPDataset(
        syn["train"], syn["root"], syn["tokenizer"], image_size=24, add_box_loss=False, use_hard_neg=False
    )
    assert set(ds[0]) == {"pixel_values", "text_long", "text_short"}


def test_invalid_boxes_dropped_and_counted(syn, tmp_path):
    recs = read_annotations(syn["train"])[:4]
    good = recs[0]["bbox_info"][0]
    bad = lambda bbox: {**good, "bbox": bbox}
    recs[0]["bbox_info"] = [bad([0.2, 0.2, 0.2, 0.5]), good, bad([0.5, 0.5, 1.3, 0.9])]
    recs[1]["bbox_info"] = [bad([0.6, 0.1, 0.4, 0.3]), bad([math.nan, 0.1, 0.4, 0.3]), bad([1, 2, 3])]
    recs[2]["bbox_info"] = [good] * 5  # one over max_boxes
    recs[3]["bbox_info"][0] = {**recs[3]["bbox_info"][0], "flag_short_neg": 0}
    path = tmp_path / "bad.jsonl"
    # json.dumps writes NaN as the literal NaN, which json.loads reads back
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    ds = FGCLIPDataset(path, syn["root"], syn["tokenizer"], image_size=24)
    assert ds.dropped_boxes == Counter(zero_area=1, out_of_range=1, inverted=1, nonfinite=1, malformed=1, over_max=1)
    assert [int(ds[i]["box_nums"]) for i in range(3)] == [1, 0, 4]
    assert ds[1]["hard_valid"].sum() == 0 and ds[1]["boxes"].eq(0).all()
    assert ds[0]["boxes"][0].tolist() == pytest.approx(good["bbox"])
    assert ds[3]["hard_valid"].tolist()[0] is False and ds[3]["hard_valid"][1]


def test_collate(syn):
    ds = FGCLIPDataset(syn["train"], syn["root"], syn["tokenizer"], image_size=24)
    b = collate([ds[i] for i in range(3)])
    assert b["pixel_values"].shape == (3, 3, 24, 24)
    assert b["hard_texts"].shape == (3, 4, 11, 77) and b["box_nums"].shape == (3,)
    assert b["text_long"].shape == (3, 248) and b["hard_valid"].dtype == torch.bool
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=collate)
    assert next(iter(loader))["boxes"].shape == (5, 4, 4)
