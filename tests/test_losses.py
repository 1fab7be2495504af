"""fgclip.losses: each head's candidates, targets and chance level (uniform logits -> ln N)."""

import math

import pytest
import torch
import torch.nn.functional as F

from fgclip.losses import GlobalContrastiveLoss, HardNegativeLoss, RegionContrastiveLoss, world
from fgclip.memory_bank import RegionMemoryBank

LN_100 = math.log(100.0)
D = 16


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def same_rows(n, seed=0):
    """n copies of one unit vector: every logit of a row is equal (uniform softmax)."""
    return unit(1, D, seed=seed).expand(n, D).clone()


def scale(v=LN_100):
    return torch.tensor(float(v))


def test_world_is_single_process_here():
    assert world() == (0, 1)


@pytest.mark.parametrize("b", [1, 4, 8])
def test_global_uniform_logits_give_ln_batch(b):
    out = GlobalContrastiveLoss()(same_rows(b), same_rows(b, seed=1), scale())
    assert out.logits.shape == (b, b)
    assert torch.equal(out.targets, torch.arange(b))  # the diagonal
    assert out.loss.item() == pytest.approx(math.log(b), abs=1e-5)


def test_global_matches_symmetric_infonce():
    img, txt = unit(6, D, seed=2), unit(6, D, seed=3)
    s = scale(2.0)
    out = GlobalContrastiveLoss()(img, txt, s)
    logits = math.exp(2.0) * img @ txt.t()
    t = torch.arange(6)
    ref = (F.cross_entropy(logits, t) + F.cross_entropy(logits.t(), t)) / 2
    assert torch.allclose(out.logits, logits, atol=1e-5)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)
    # aligned pairs at scale 100 -> near zero loss
    aligned = GlobalContrastiveLoss()(img, img, scale())
    assert aligned.loss.item() < 0.5 * math.log(6)


@pytest.mark.parametrize("k", [2, 5])
def test_region_uniform_logits_no_queue(k):
    out = RegionContrastiveLoss()(same_rows(k), same_rows(k, seed=1), scale())
    assert out.logits.shape == (k, k)
    assert torch.equal(out.targets, torch.arange(k))
    assert out.loss.item() == pytest.approx(math.log(k), abs=1e-5)


def test_region_uniform_logits_with_queue():
    k, f = 4, 12
    boxes, caps = same_rows(k), same_rows(k, seed=1)
    queue = same_rows(f, seed=1)  # same vector as the captions: uniform rows
    ids = torch.arange(1, k + 1)
    qids = torch.arange(100, 100 + f)  # no copies of any positive
    out = RegionContrastiveLoss()(boxes, caps, scale(), ids, queue, qids)
    assert out.logits.shape == (k, k + f)  # in-batch captions first, then the queue
    assert torch.equal(out.targets, torch.arange(k))
    assert not torch.isinf(out.logits).any()
    # box->caption rows are at chance over k + F candidates ...
    assert F.cross_entropy(out.logits, out.targets).item() == pytest.approx(math.log(k + f), abs=1e-5)
    # ... caption->box rows stay in-batch (k); the loss is the mean of the two directions
    assert out.loss.item() == pytest.approx((math.log(k + f) + math.log(k)) / 2, abs=1e-5)


def test_region_masks_queued_copies_of_the_positive():
    k, f = 3, 8
    boxes, caps = same_rows(k), same_rows(k, seed=1)
    queue = same_rows(f, seed=1)  # same vector as the captions: uniform rows
    ids = torch.tensor([11, 22, 33])
    qids = torch.tensor([11, 11, 22, 99, 98, 97, 96, 95])  # two copies of row 0's caption, one of row 1's
    out = RegionContrastiveLoss(mask_same_caption=True)(boxes, caps, scale(), ids, queue, qids)
    inf = torch.isinf(out.logits) & (out.logits < 0)
    expected = torch.zeros(k, k + f, dtype=torch.bool)
    expected[0, k + 0] = expected[0, k + 1] = True
    expected[1, k + 2] = True
    assert torch.equal(inf, expected)
    assert torch.isfinite(out.logits[:, :k]).all()  # in-batch columns (incl. the target) never masked
    per_row = F.cross_entropy(out.logits, out.targets, reduction="none")
    masked = expected.sum(1)
    for i in range(k):  # masked columns drop out of the candidates
        assert per_row[i].item() == pytest.approx(math.log(k + f - int(masked[i])), abs=1e-5)
    assert torch.isfinite(out.loss)

    # without masking every queued entry is a candidate
    off = RegionContrastiveLoss(mask_same_caption=False)(boxes, caps, scale(), ids, queue, qids)
    assert torch.isfinite(off.logits).all()
    assert F.cross_entropy(off.logits, off.targets).item() == pytest.approx(math.log(k + f), abs=1e-5)


def test_region_empty_queue_is_in_batch():
    k = 3
    out = RegionContrastiveLoss()(
        same_rows(k),
        same_rows(k, seed=1),
        scale(),
        torch.arange(k),
        torch.empty(0, D),
        torch.empty(0, dtype=torch.long),
    )
    assert out.logits.shape == (k, k)
    assert out.loss.item() == pytest.approx(math.log(k), abs=1e-5)


def test_region_queue_gets_no_gradient_and_uses_scale():
    k, f = 3, 5
    boxes = unit(k, D, seed=4).requires_grad_()
    keys = unit(f, D, seed=5).requires_grad_()  # caption features that still carry their graph
    bank = RegionMemoryBank(D, size=8, warmup_forward_calls=0)
    bank.enqueue(keys * 1.0, torch.arange(10, 10 + f))  # what the model hands the bank
    queue, qids = bank.candidates()
    assert not queue.requires_grad and queue.grad_fn is None  # the queue holds no graph
    s = torch.tensor(1.5, requires_grad=True)
    out = RegionContrastiveLoss()(boxes, unit(k, D, seed=6), s, torch.arange(k), queue, qids)
    assert torch.allclose(out.logits[:, k:], math.exp(1.5) * boxes.detach() @ keys.detach().t(), atol=1e-5)
    out.loss.backward()
    assert keys.grad is None  # no gradient flowed back through the queue into the keys
    assert boxes.grad.abs().sum() > 0 and s.grad.abs() > 0


@pytest.mark.parametrize("h,n", [(1, 10), (5, 10), (3, 4)])
def test_hardneg_uniform_logits_give_ln_candidates(h, n):
    boxes = same_rows(h)
    caps = unit(1, 1, D, seed=1).expand(h, 1 + n, D).clone()
    out = HardNegativeLoss()(boxes, caps, scale())
    assert out.logits.shape == (h, 1 + n)
    assert torch.equal(out.targets, torch.zeros(h, dtype=torch.long))  # the positive is column 0
    assert out.loss.item() == pytest.approx(math.log(1 + n), abs=1e-5)


def test_hardneg_prefers_the_positive():
    boxes = unit(4, D, seed=7)
    negs = unit(4, 10, D, seed=8)
    caps = torch.cat([boxes[:, None], negs], dim=1)  # column 0 = the box itself
    out = HardNegativeLoss()(boxes, caps, scale())
    assert out.loss.item() < 0.1 * math.log(11)
    assert (out.logits.argmax(1) == 0).all()
