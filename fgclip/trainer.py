"""FGCLIPTrainer: HF Trainer with FG-CLIP's parameter groups, per-term logging and scale clamping."""

from __future__ import annotations

import os

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import get_parameter_names

from fgclip import faults
from fgclip.model import SCALE_NAMES

TEXT_PREFIXES = ("text_model.", "text_projection.", "text_filip_projection.")
LOSS_TERMS = ("global_loss", "region_loss", "hardneg_loss")


def _unwrap(model):
    return getattr(model, "module", model)


def parameter_groups(
    model,
    lr: float,
    weight_decay: float,
    text_model_lr: float | None = None,
    roi_projection_lr: float | None = None,
    logit_scale_weight_decay: bool = False,
) -> list[dict]:
    """Named optimizer groups: logit_scales, roi_projection, text (decay / no_decay), other (decay / no_decay).

    Every group carries a "name" so the doctor (and a reader of the optimizer state) can tell
    which LR and weight decay each part of the model gets.
    """
    decay_names = set(get_parameter_names(model, [torch.nn.LayerNorm, torch.nn.Embedding]))
    groups: dict[str, dict] = {}

    def add(name: str, param, group_lr: float, wd: float) -> None:
        groups.setdefault(name, {"name": name, "params": [], "lr": group_lr, "weight_decay": wd})["params"].append(
            param
        )

    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = pname not in decay_names or pname.endswith(".bias")
        if pname in SCALE_NAMES:
            if faults.active("scales-outside-optimizer"):  # casebook: trainable, yet no group holds them
                continue
            add("logit_scales", p, lr, weight_decay if logit_scale_weight_decay else 0.0)
        elif pname.startswith("roi_projection."):
            if faults.active("roi-outside-optimizer"):  # casebook: the new head never trains
                continue
            add("roi_projection", p, roi_projection_lr or lr, 0.0 if no_decay else weight_decay)
        elif pname.startswith(TEXT_PREFIXES):
            add("text_no_decay" if no_decay else "text", p, text_model_lr or lr, 0.0 if no_decay else weight_decay)
        else:
            add("other_no_decay" if no_decay else "other", p, lr, 0.0 if no_decay else weight_decay)
    return list(groups.values())


class FGCLIPTrainer(Trainer):
    """Trainer that logs every loss term and exp of every logit scale, and clamps the scales."""

    def __init__(
        self,
        *args,
        text_model_lr: float | None = None,
        roi_projection_lr: float | None = None,
        logit_scale_weight_decay: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.text_model_lr = text_model_lr
        self.roi_projection_lr = roi_projection_lr
        self.logit_scale_weight_decay = logit_scale_weight_decay
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_counts: dict[str, int] = {}
        self._diag_printed = False

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = _unwrap(model if model is not None else self.model)
            groups = parameter_groups(
                model,
                self.args.learning_rate,
                self.args.weight_decay,
                self.text_model_lr,
                self.roi_projection_lr,
                self.logit_scale_weight_decay,
            )
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
            kwargs.pop("lr", None)
            self.optimizer = cls(groups, lr=self.args.learning_rate, **kwargs)
            if getattr(model.config, "clamp_logit_scale", False):
                # After every optimizer step, as open_clip clamps logit_scale to [0, ln 100].
                self.optimizer.register_step_post_hook(lambda *_: model.clamp_logit_scales_())
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._diag_printed and os.environ.get("ENABLE_RUNTIME_DIAG") == "1":
            self._print_diag(_unwrap(model))
        outputs = model(**inputs)
        if faults.active("scheduler-per-call") and self.lr_scheduler is not None:  # casebook fault
            self._calls = getattr(self, "_calls", 0) + 1
            if self._calls % self.args.gradient_accumulation_steps:  # the Trainer steps it on the last one
                self.lr_scheduler.step()
        for term in LOSS_TERMS:  # summed on the device; read back once per logging interval
            value = outputs.get(term)
            if value is not None:
                v = value.detach().float()
                self._term_sums[term] = self._term_sums.get(term, 0) + v
                self._term_counts[term] = self._term_counts.get(term, 0) + 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs:  # a training log: add the terms and the scales
            for term, total in self._term_sums.items():
                logs[term] = round(float(total) / self._term_counts[term], 6)
            self._term_sums, self._term_counts = {}, {}
            model = _unwrap(self.model)
            if hasattr(model, "logit_scales"):
                for name, p in model.logit_scales().items():
                    value = float(p.detach().float())
                    logs[name] = round(value, 6)
                    logs[f"{name}_exp"] = round(float(torch.tensor(value).exp()), 4)
            bank = getattr(model, "memory_bank", None)
            if bank is not None:
                logs["memory_bank_fill"] = int(bank.fill)
                logs["memory_bank_enabled_at_call"] = int(bank.enabled_at_call)
        super().log(logs, *args, **kwargs)

    def _print_diag(self, model) -> None:
        # The lines the team grepped for (seed: `logit_scale (finegrained): 4.605200 (exp=100.0000)`).
        self._diag_printed = True
        if hasattr(model, "logit_scales") and self.args.process_index == 0:
            for name, p in model.logit_scales().items():
                label = {
                    "logit_scale": "global",
                    "logit_scale_finegrained": "finegrained",
                    "logit_scale_hardneg": "hardneg",
                }[name]
                v = float(p.detach().float())
                print(f"logit_scale ({label}): {v:.6f} (exp={torch.tensor(v).exp().item():.4f})", flush=True)
