"""fgclip.model: long position table, from_clip, scales, loss terms, box pooling."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPModel

from fgclip.arguments import ArgumentError
from fgclip.config import LN_100, tiny_config
from fgclip.data import FGCLIPDataset, collate
from fgclip.model import SCALE_NAMES, FGCLIPModel, stretch_positions

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest


def tiny_model(tokenizer, **overrides):
    torch.manual_seed(0)
    cfg = tiny_config(
        len(tokenizer), tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, **overrides
    )
    return FGCLIPModel(cfg)


@pytest.fixture(scope="module")
def batch(synthetic_root, tiny_tokenizer):
    data = FGCLIPDataset(
        synthetic_root / "train.jsonl",
        synthetic_root,
        tiny_tokenizer,
        image_size=64,
        max_boxes=4,
        add_box_loss=True,
        use_hard_neg=True,
    )
    return collate([data[i] for i in range(6)])


# ---- position table -------------------------------------------------------------------------
def test_stretch_positions_77_to_248():
    table = torch.randn(77, 8, generator=torch.Generator().manual_seed(0))
    out = stretch_positions(table, 248, 20)
    assert out.shape == (248, 8)
    assert torch.equal(out[:20], table[:20])
    for i in range(57):
        nxt = table[20 + i + 1] if i < 56 else 2 * table[76] - table[75]  # last row extrapolated
        for j in range(4):
            expect = table[20 + i] + (j / 4) * (nxt - table[20 + i])
            assert torch.allclose(out[20 + 4 * i + j], expect, atol=1e-6), (i, j)
    assert torch.equal(out[20::4], table[20:])  # every 4th row from 20 is an original row
    with pytest.raises(ArgumentError, match="to exactly 248 rows"):  # the subject's refusal, named
        stretch_positions(table, 200, 20)


def test_new_model_starts_with_the_stretched_table(tiny_tokenizer):
    emb = tiny_model(tiny_tokenizer).text_model.embeddings
    assert emb.long_position_embedding.weight.shape == (248, emb.position_embedding.weight.shape[1])
    assert torch.allclose(emb.long_position_embedding.weight, stretch_positions(emb.position_embedding.weight))


@pytest.mark.parametrize("long", [False, True])
def test_trimmed_padding_encode_equals_full_length(tiny_tokenizer, long):
    model = tiny_model(tiny_tokenizer).eval()
    length = 248 if long else 77
    texts = [
        "small red circle at the top left",
        "a picture with two shapes on a plain grey background. "
        "there is a large blue ring in the center and a small white cross on the right.",
    ]
    ids = tiny_tokenizer(texts, max_length=length, padding="max_length", truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (2, length)
    with torch.no_grad():
        fast = model.encode_text(ids, long=long)
        emb = model.text_model.embeddings
        emb.use_long = long
        try:  # the full padded sequence, no trimming
            pooled = model.text_model(input_ids=ids).pooler_output
        finally:
            emb.use_long = False
        proj = model.text_filip_projection if long else model.text_projection
        full = F.normalize(proj(pooled), dim=-1)
    assert fast.shape == (2, model.config.projection_dim)
    assert torch.allclose(fast, full, atol=1e-5)
    assert torch.allclose(fast.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_long_text_uses_the_long_table(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer).eval()
    ids = tiny_tokenizer(
        ["small red circle at the top left"], max_length=77, padding="max_length", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        model.text_model.embeddings.long_position_embedding.weight.add_(1.0)  # long table != short table
        short, long = model.encode_text(ids), model.encode_text(ids, long=True)
        model.text_filip_projection.weight.copy_(model.text_projection.weight)
        assert not torch.allclose(short, model.encode_text(ids, long=True))
    assert not torch.allclose(short, long)
    too_long = torch.full((1, 249), 5)
    too_long[0, -1] = tiny_tokenizer.eos_token_id  # EOS at position 248: needs 249 positions
    with pytest.raises(ValueError):
        model.encode_text(too_long, long=True)


# ---- from_clip ------------------------------------------------------------------------------
def test_from_clip_copies_towers_and_base_scale(synthetic_root):
    base = synthetic_root / "base"
    clip = CLIPModel.from_pretrained(base)
    model = FGCLIPModel.from_clip(str(base))
    clip_sd, sd = clip.state_dict(), model.state_dict()
    towers = [
        k for k in clip_sd if k.startswith(("text_model.", "vision_model.", "visual_projection.", "text_projection."))
    ]
    assert len(towers) > 50
    for k in towers:
        assert torch.equal(sd[k], clip_sd[k]), k
    assert torch.equal(model.text_filip_projection.weight, clip.text_projection.weight)
    emb = model.text_model.embeddings
    assert torch.equal(
        emb.long_position_embedding.weight, stretch_positions(clip.text_model.embeddings.position_embedding.weight)
    )
    base_scale = float(clip.logit_scale.detach())
    assert base_scale == pytest.approx(LN_100, abs=1e-3)  # the base sits at the ln 100 clamp
    for name in SCALE_NAMES:  # FG-CLIP v1: the new scales start where the base's is
        assert getattr(model, name).item() == pytest.approx(base_scale, abs=1e-6), name
    assert torch.equal(model.roi_projection.weight, torch.eye(model.config.projection_dim))
    assert torch.equal(model.roi_projection.bias, torch.zeros(model.config.projection_dim))

    seeded = FGCLIPModel.from_clip(str(base), new_scale_init=2.6592, memory_bank_size=32)
    assert seeded.logit_scale.item() == pytest.approx(base_scale, abs=1e-6)
    assert seeded.logit_scale_finegrained.item() == pytest.approx(2.6592, abs=1e-6)
    assert seeded.logit_scale_hardneg.item() == pytest.approx(2.6592, abs=1e-6)
    assert seeded.memory_bank.size == 32


# ---- scales ---------------------------------------------------------------------------------
def test_clamp_logit_scales(tiny_tokenizer):
    model = tiny_model(tiny_tokenizer)
    assert list(model.logit_scales()) == list(SCALE_NAMES)
    with torch.no_grad():
        model.logit_scale.fill_(5.0)
        model.logit_scale_finegrained.fill_(-0.5)
        model.logit_scale_hardneg.fill_(3.0)
    model.clamp_logit_scales_()
    assert model.logit_scale.item() == pytest.approx(math.log(100), abs=1e-6)
    assert model.logit_scale_finegrained.item() == 0.0
    assert model.logit_scale_hardneg.item() == pytest.approx(3.0)
    assert all(p.requires_grad for p in model.logit_scales().values())


# ---- forward --------------------------------------------------------------------------------
def test_named_loss_terms_and_weights(tiny_tokenizer, batch):
    model = tiny_model(tiny_tokenizer).train()
    out = model(**batch)
    for term in ("loss", "global_loss", "region_loss", "hardneg_loss"):
        assert out[term] is not None and torch.isfinite(out[term]), term
    expect = out.global_loss + 0.1 * out.region_loss + 0.5 * out.hardneg_loss
    assert out.loss.item() == pytest.approx(expect.item(), rel=1e-6)
    out.loss.backward()
    for name in SCALE_NAMES + ("roi_projection.weight", "text_filip_projection.weight"):
        p = model.get_parameter(name)
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_global_loss_is_long_plus_short(tiny_tokenizer, batch):
    model = tiny_model(tiny_tokenizer, add_box_loss=False, use_hard_neg=False).eval()
    with torch.no_grad():
        both = model(pixel_values=batch["pixel_values"], text_long=batch["text_long"], text_short=batch["text_short"])
        long = model(pixel_values=batch["pixel_values"], text_long=batch["text_long"])
        short = model(pixel_values=batch["pixel_values"], text_short=batch["text_short"])
    assert both.region_loss is None and both.hardneg_loss is None
    assert both.global_loss.item() == pytest.approx(long.global_loss.item() + short.global_loss.item(), rel=1e-5)
    assert both.loss.item() == pytest.approx(both.global_loss.item(), rel=1e-6)


def test_no_valid_boxes_no_region_loss(tiny_tokenizer, batch):
    model = tiny_model(tiny_tokenizer).eval()
    empty = dict(batch, box_nums=torch.zeros_like(batch["box_nums"]))
    with torch.no_grad():
        out = model(**empty)
    assert out.region_loss is None and out.hardneg_loss is None and out.global_loss is not None


def test_region_pool_image_ignores_the_box(tiny_tokenizer, batch):
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]]).expand(2, 2, 4)
    valid = torch.ones(2, 2, dtype=torch.bool)
    feats = {}
    for pool in ("box", "image"):
        model = tiny_model(tiny_tokenizer, region_pool=pool).eval()
        with torch.no_grad():
            vision = model.vision_model(pixel_values=batch["pixel_values"][:2], output_hidden_states=True)
            fmap = model.patch_feature_map(vision.hidden_states[-2])
            feats[pool] = model.box_features(fmap, boxes, valid)  # [4, D]: image 0 box 0, 1; image 1 box 0, 1
        assert fmap.shape == (2, model.config.projection_dim, 8, 8)
        assert torch.allclose(feats[pool].norm(dim=-1), torch.ones(4), atol=1e-5)
    # two different boxes on one image: different features when pooling boxes, identical for the control
    assert not torch.allclose(feats["box"][0], feats["box"][1], atol=1e-3)
    assert torch.equal(feats["image"][0], feats["image"][1])
    assert torch.equal(feats["image"][2], feats["image"][3])
    assert not torch.allclose(feats["image"][0], feats["image"][2], atol=1e-3)  # still per image
    # the control equals pooling the whole-image box
    whole = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]).expand(2, 1, 4)
    model = tiny_model(tiny_tokenizer, region_pool="box").eval()
    with torch.no_grad():
        vision = model.vision_model(pixel_values=batch["pixel_values"][:2], output_hidden_states=True)
        ref = model.box_features(
            model.patch_feature_map(vision.hidden_states[-2]), whole, torch.ones(2, 1, dtype=torch.bool)
        )
    assert torch.allclose(feats["image"][[0, 2]], ref, atol=1e-6)
