"""The placed probe: hooks on code the doctor did not write, at the sites the static reader found.

Sites are plain data (reader/sites.py, handed down by `live` in-process or as JSON to the child
bootstrap): each loss term's own function, the RoIAlign-like call, the box-feature method, the
memory bank's attribute. Nothing here knows a name of the bundled subject. Hooks, in the order
transformers prefers them (library hooks before patching):

- an nn.Module's forward (a loss head): forward pre- and post-hooks on its instances;
- a method of a module (`self.pair_loss(...)`): wrapped on the instance, never on the class;
- a module-level function the code calls by name (`roi_align` in the model's module): replaced in
  the namespace of the module that calls it, for the run only, and put back in `remove()`.

While a term's function runs, the cross-entropy probe names its loss calls by the term (seen
through a TorchFunctionMode, probes/cross_entropy.py). RoI outputs give raw box-feature norms and
each box's image; box features give the within-image cosine. `fallback` says why the global F.*
patch is still needed (a term the reader did not place, or one whose code is not in this model),
None when every term is placed.
"""

from __future__ import annotations

import sys

import torch

from fgclip_doctor.probes.cross_entropy import CrossEntropyProbe
from fgclip_doctor.probes.subject import SubjectProbe


def _defines(cls: type, module: str, qualname: str) -> bool:
    return any(c.__module__ == module and c.__qualname__ == qualname for c in cls.__mro__)


def _wrapped(original, before, after):
    """`original` called between before(args, kwargs) and after(args, out) -> out (also when it raises)."""

    def wrapper(*args, **kwargs):
        before(args, kwargs)
        out = None
        try:
            out = original(*args, **kwargs)
        finally:
            out = after(args, out)
        return out

    return wrapper


class PlacedProbe(SubjectProbe):
    """SubjectProbe's statistics, hooked where the reading says rather than by class name."""

    def __init__(
        self, model: torch.nn.Module, ce: CrossEntropyProbe, sites: list[dict], unplaced: dict | None = None
    ) -> None:
        super().__init__(model, ce)
        self.sites = list(sites)
        self.placed: dict[str, str] = {}  # term / part -> where it is hooked (`module:qualname`)
        self.missing: dict[str, str] = dict(unplaced or {})  # term / part -> why it is not hooked
        self._roi_images: torch.Tensor | None = None  # the image of each box of the latest RoI call
        self.bank_attr = next((s["name"] for s in self.sites if s["what"] == "bank"), None)

    # ---- placing -------------------------------------------------------------------------
    def _modules_with(self, site: dict) -> list[torch.nn.Module]:
        return [m for m in self.model.modules() if _defines(type(m), site["module"], site["qualname"].split(".")[0])]

    def _wrap_method(self, obj, name: str, before, after) -> None:
        original = getattr(obj, name)  # bound method
        previous = obj.__dict__.get(name)
        # an instance attribute shadows the method; removed on exit
        obj.__dict__[name] = _wrapped(original, before, after)
        self.patches.append((obj, name, previous))

    def _replace_function(self, site: dict, before, after) -> str | None:
        """Replace `site["name"]` in the caller's module; why not, when it cannot."""
        module = sys.modules.get(site.get("caller", ""))
        name = site.get("name", "")
        original = getattr(module, name, None) if module is not None else None
        if original is None or getattr(original, "__name__", None) != site["qualname"]:
            return f"{site.get('caller')}.{name} is not the function the reader found ({site['at']})"
        setattr(module, name, _wrapped(original, before, after))
        self.patches.append((module, name, original))
        return None

    def _place(self, site: dict, label: str, before, after) -> None:
        """Hook `site` with before(args, kwargs) / after(args, out) -> out; record where, or why not."""
        where = f"{site.get('module', '')}:{site.get('qualname', site.get('name', ''))}"
        kind = site["kind"]
        if kind == "function":
            why = self._replace_function(site, before, after)
            if why is None:
                self.placed[label] = where
            else:
                self.missing[label] = why
            return
        if kind == "attribute":
            found = [getattr(self.model, site["name"], None)]
        else:
            found = self._modules_with(site)
        method = site.get("qualname", "").rsplit(".", 1)[-1]
        found = [m for m in found if isinstance(m, torch.nn.Module) and (kind != "method" or hasattr(m, method))]
        if not found:
            self.missing[label] = f"no instance of {where} in the model trained ({site['at']})"
            return
        for module in found:
            if kind == "method":
                self._wrap_method(module, method, before, after)
            else:  # a module's forward: hooks, also called when it raises
                self.handles.append(module.register_forward_pre_hook(lambda m, a, b=before: b(a, {})))
                self.handles.append(
                    module.register_forward_hook(lambda m, a, out, f=after: f(a, out), always_call=True)
                )
        self.placed[label] = where

    # ---- what each site measures ----------------------------------------------------------
    def _term(self, site: dict) -> None:
        term = site["term"]

        def before(args, kwargs) -> None:
            self.ce.enter(term)
            if term == "region" and _queue_call(args):
                self._region_inputs(args)

        def after(args, out):
            self.ce.leave()
            if term == "region" and self._queued is not None:
                self._region_logits(out)
            return out

        self._place(site, term, before, after)

    def _roi(self, site: dict) -> None:
        acc = self.acc["roi"]

        def before(args, kwargs) -> None:
            boxes = args[1] if len(args) > 1 else kwargs.get("boxes", kwargs.get("rois"))
            self._roi_images = _box_images(boxes)

        def after(args, out):
            if isinstance(out, torch.Tensor) and out.dim() >= 2 and out.shape[0] and self._sampled("roi"):
                norms = out.detach().float().flatten(1).norm(dim=1)
                acc.add(torch.stack([torch.ones_like(norms[0]), norms.mean()]), norms.min().reshape(1))
            return out

        self._place(site, "roi", before, after)

    def _box(self, site: dict) -> None:
        acc = self.acc["within_image"]

        def before(args, kwargs) -> None:
            self._roi_images = None  # only the RoI calls made by this call of the method count

        def after(args, feats):
            image, self._roi_images = self._roi_images, None
            if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or image is None:
                return feats
            k = feats.shape[0]
            if k > 1 and image.shape[0] == k and self._sampled("within_image"):
                eye = torch.eye(k, dtype=torch.bool, device=feats.device)
                image = image.to(feats.device)
                same = (image[:, None] == image[None, :]) & ~eye
                f = feats.detach().float()
                f = f / f.norm(dim=1, keepdim=True).clamp(min=1e-12)
                cos = ((f @ f.t()) * same).sum() / same.sum().clamp(min=1)  # masked mean, no host sync
                first = ~(same & torch.ones_like(same).tril(-1)).any(1)  # each image's first box
                images = (first & same.any(1)).sum().float()  # images with >= 2 boxes
                acc.add(torch.stack([torch.ones_like(cos), cos, images]))
            return feats

        self._place(site, "box_features", before, after)

    def _bank_of_model(self):
        bank = getattr(self.model, self.bank_attr, None) if self.bank_attr else None
        return bank if isinstance(bank, torch.nn.Module) else None

    def install(self) -> PlacedProbe:
        for site in self.sites:
            if site["what"] == "term":
                self._term(site)
            elif site["what"] == "roi":
                self._roi(site)
            elif site["what"] == "box_features":
                self._box(site)
        self._text_hooks()
        return self

    @property
    def fallback(self) -> str | None:
        """Why the cross-entropy fallback (the F.* patch, calls named by call site) is needed."""
        missed = {t: why for t, why in self.missing.items() if t not in ("roi", "box_features")}
        if missed:
            return "; ".join(f"{t}: {why}" for t, why in missed.items())
        if not any(s["what"] == "term" for s in self.sites):
            return "the reader placed no loss term in this code"
        return None


def _queue_call(args) -> bool:
    """A region function called as (box features, captions, scale, caption ids, queue, queue ids)
    (the subject's layout, whatever its names): the queue's rows comparable with the captions."""
    if len(args) < 6 or not all(isinstance(args[i], torch.Tensor) for i in (1, 3, 4, 5)):
        return False
    captions, ids, queue, qids = args[1], args[3], args[4], args[5]
    return (
        captions.dim() == queue.dim() == 2
        and captions.shape[1] == queue.shape[1]
        and ids.dim() == qids.dim() == 1
        and ids.shape[0] == captions.shape[0]
        and qids.shape[0] == queue.shape[0]
    )


def _box_images(boxes) -> torch.Tensor | None:
    """The image index of each box: column 0 of [K, 5] rois, or the position in a list of [Ki, 4]."""
    if isinstance(boxes, torch.Tensor) and boxes.dim() == 2 and boxes.shape[1] == 5:
        return boxes.detach()[:, 0].long()
    if isinstance(boxes, (list, tuple)) and boxes and all(isinstance(b, torch.Tensor) for b in boxes):
        counts = torch.tensor([b.shape[0] for b in boxes])  # host ints: no sync
        return torch.repeat_interleave(torch.arange(len(boxes)), counts).to(boxes[0].device)
    return None
