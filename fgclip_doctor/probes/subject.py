"""The subject probe: FG-CLIP's own modules, found by type, for exact names and bank state.

Loss heads announce their term to the cross-entropy probe (so calls are named `global`,
`region`, `hardneg` instead of a call site); the memory bank's buffers give its switch-on call
and fill; the region head's inputs give copies of the positive in the queue; RoIAlign outputs
give raw box-feature norms (zero = boxes off the map); box features give the within-image
cosine (near 1 = the model ignores the box); text inputs give rows that lost their EOS.
All of it on the device; every handle is kept and removed.
"""

from __future__ import annotations

import torch

from fgclip_doctor.probes.accumulator import Accumulator
from fgclip_doctor.probes.cross_entropy import CrossEntropyProbe
from fgclip_doctor.vocabulary import NEAR_COPY_COSINE

#: the bank's buffers and attributes bank_state reads (the subject's RegionMemoryBank keeps them)
BANK_STATE = ("queue", "fill", "ptr", "forward_calls", "enabled_at_call", "size", "warmup_forward_calls")
HEAD_TERMS = {"GlobalContrastiveLoss": "global", "RegionContrastiveLoss": "region", "HardNegativeLoss": "hardneg"}


def _is_bundled(model) -> bool:
    """Whether `model` is the bundled subject's own class (its RoIAlign can be hooked by module):
    never true for a user's package that is also called `fgclip`."""
    import sys
    from pathlib import Path

    from fgclip_doctor.bundled import PACKAGE

    file = getattr(sys.modules.get(type(model).__module__), "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(PACKAGE)


def _bank_of(model):
    return getattr(model, "memory_bank", None)


class SubjectProbe:
    """Hooks on the subject's loss heads, memory bank, RoIAlign and text tower."""

    def __init__(self, model: torch.nn.Module, ce: CrossEntropyProbe, sample_every: int = 5) -> None:
        self.model, self.ce = model, ce
        self.sample_every, self.calls = max(1, sample_every), {}
        self.handles: list = []
        self.patches: list[tuple[object, str, object]] = []
        self.acc = {
            "bank_rows": Accumulator(("calls", "same_caption_rows", "near_duplicate_rows", "same_caption_unmasked")),
            "roi": Accumulator(("calls", "norm_mean"), ("norm_min",)),
            "within_image": Accumulator(("calls", "cosine", "images")),
            "text": Accumulator(("calls", "rows", "rows_without_eos")),
        }
        self.heads_found: list[str] = []
        self._queued: torch.Tensor | None = None  # [k, F] same-caption queue entries of the region call
        self._row_stats: list[torch.Tensor] = []

    def _sampled(self, what: str) -> bool:
        """True on one call in `sample_every` for each statistic (costlier ones are sampled)."""
        n = self.calls[what] = self.calls.get(what, 0) + 1
        return (n - 1) % self.sample_every == 0

    # ---- loss heads: name the cross-entropy calls they make --------------------------------
    def _head_hooks(self) -> None:
        for name, module in self.model.named_modules():
            term = HEAD_TERMS.get(type(module).__name__)
            if term is None:
                continue
            self.heads_found.append(name)

            def pre(mod, args, term=term):
                self.ce.current_term, self.ce.calls_in_term = term, 0
                if term == "region":
                    self._region_inputs(args)

            def post(mod, args, out, term=term):
                self.ce.current_term = None
                if term == "region" and self._queued is not None:
                    self._region_logits(out)

            self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def _region_inputs(self, args) -> None:
        # RegionContrastiveLoss(boxes, captions, logit_scale, caption_ids, queue, queue_ids)
        if (
            len(args) < 6
            or args[4] is None
            or args[3] is None
            or args[4].shape[0] == 0
            or not self._sampled("bank_rows")
        ):
            return
        captions, ids, queue, qids = args[1].detach(), args[3], args[4].detach(), args[5]
        same = ids[:, None] == qids[None, :]  # [k, F] copies of the positive's caption
        self._queued = same  # the head's logits (post hook) tell whether these reach the loss
        # Near-copies: features equal up to float error (cosine > NEAR_COPY_COSINE): captions that differ
        # only where the tokenizer does not look. Not a looser line: text towers are anisotropic;
        # on the tiny base 92 % of distinct box captions have a neighbour above 0.99, and after
        # the 60-step fine-tune 99.8 % one above 0.999 ("circle" / "square" at 0.9998), yet at
        # scale 100 those differences are logits the loss trains apart: hard, not false, negatives.
        near = (captions.float() @ queue.float().t() > NEAR_COPY_COSINE) & ~same
        self._row_stats = [same.any(1).float().mean(), near.any(1).float().mean()]

    def _region_logits(self, out) -> None:
        # The head's box->caption logits [k, k + F]: the last F columns are the queue. A same-caption
        # queue column with a finite logit is a copy of the positive that the loss counts as a negative
        # (masking writes -inf there): measured on the logits, whatever the head's mask flag says.
        same, self._queued = self._queued, None
        logits = getattr(out, "logits", None)
        if logits is None or logits.shape[1] < same.shape[1] or logits.shape[0] != same.shape[0]:
            return
        unmasked = (same & torch.isfinite(logits.detach()[:, -same.shape[1] :])).any(1).float().mean()
        one = torch.ones((), device=same.device)
        self.acc["bank_rows"].add(torch.stack([one, *self._row_stats, unmasked]))

    # ---- RoIAlign and box features ---------------------------------------------------------
    def _roi_patch(self) -> None:
        import fgclip.model as fgmodel

        original = fgmodel.roi_align
        acc = self.acc["roi"]

        def roi_align(*args, **kwargs):
            out = original(*args, **kwargs)
            if out.shape[0] and self._sampled("roi"):
                norms = out.detach().float().flatten(1).norm(dim=1)
                acc.add(torch.stack([torch.ones_like(norms[0]), norms.mean()]), norms.min().reshape(1))
            return out

        fgmodel.roi_align = roi_align
        self.patches.append((fgmodel, "roi_align", original))

    def _box_feature_patch(self) -> None:
        model = self.model
        original = model.box_features  # bound method
        acc = self.acc["within_image"]

        def box_features(fmap, boxes, valid):
            feats = original(fmap, boxes, valid)  # [k, D] normalised, rows in row-major valid order
            k = feats.shape[0]
            if k > 1 and self._sampled("within_image"):
                # Image of each row without a host sync: searchsorted on the running box counts.
                image = torch.searchsorted(valid.sum(1).cumsum(0), torch.arange(k, device=feats.device), right=True)
                same = (image[:, None] == image[None, :]) & ~torch.eye(k, dtype=torch.bool, device=feats.device)
                f = feats.detach().float()
                cos = ((f @ f.t()) * same).sum() / same.sum().clamp(min=1)  # masked mean, no indexing sync
                acc.add(torch.stack([torch.ones_like(cos), cos, (valid.sum(1) >= 2).sum().float()]))
            return feats

        model.box_features = box_features  # instance attribute shadows the method; removed on exit
        self.patches.append((model, "box_features", None))

    # ---- text rows ---------------------------------------------------------------------------
    def _text_hooks(self) -> None:
        from transformers import CLIPTextModel

        acc = self.acc["text"]
        for module in self.model.modules():
            if isinstance(module, CLIPTextModel) and module.eos_token_id not in (None, 2):
                eos = module.eos_token_id

                def pre(mod, args, kwargs, eos=eos):
                    ids = kwargs.get("input_ids", args[0] if args else None)
                    if ids is not None and self._sampled("text"):  # truncation is systematic: sampled calls see it
                        missing = (ids != eos).all(-1).sum().float()
                        acc.add(torch.stack([torch.ones_like(missing), missing * 0 + ids.shape[0], missing]))

                self.handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))

    def install(self) -> SubjectProbe:
        self._head_hooks()
        if _is_bundled(self.model) and hasattr(self.model, "box_features") and hasattr(self.model, "patch_feature_map"):
            self._roi_patch()
            self._box_feature_patch()
        self._text_hooks()
        return self

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        for obj, attr, original in reversed(self.patches):
            if original is None:
                obj.__dict__.pop(attr, None)
            else:
                setattr(obj, attr, original)
        self.patches.clear()

    # ---- bank state, read at interval ends (outside the forward pass) ---------------------
    def _bank_of_model(self):
        return _bank_of(self.model)

    def bank_state(self) -> dict | None:
        """Queue size, fill, pointer, forward calls, switch-on call, key norm error (one read);
        None without a bank, or for a bank that keeps none of these buffers by these names."""
        bank = self._bank_of_model()
        if bank is None or not all(hasattr(bank, n) for n in BANK_STATE):
            return None
        n = bank.fill.reshape(())
        rows = torch.arange(bank.queue.shape[0], device=bank.queue.device) < n
        norms = bank.queue.detach().float().norm(dim=1)
        err = torch.where(rows, (norms - 1).abs(), torch.zeros_like(norms)).amax()
        vals = torch.stack(
            [
                bank.fill.double(),
                bank.ptr.double(),
                bank.forward_calls.double(),
                bank.enabled_at_call.double(),
                err.double(),
            ]
        ).tolist()
        return {
            "size": bank.size,
            "warmup_forward_calls": bank.warmup_forward_calls,
            "mask_same_caption": getattr(bank, "mask_same_caption", None),
            "fill": int(vals[0]),
            "ptr": int(vals[1]),
            "forward_calls": int(vals[2]),
            "enabled_at_call": int(vals[3]),
            "key_norm_error": vals[4],
            "requires_grad": bool(bank.queue.requires_grad),
        }
