"""ProbeCallback: the probes as a TrainerCallback; `fgclip_doctor.callback.DoctorCallback` adds the rules.

It observes and only steers through `control` (transformers' callback contract): probes are
installed at train begin and removed at train end or `close()` (also on error / Ctrl-C when
used as a context manager); statistics stay on the device and are read back every `interval`
optimizer steps, keyed by step (`history`). `record()` is what was measured, as a ProbeRecord.
A `judge(record) -> findings` given by the constructor is asked at each read-back when
`abort_on="fail"`; a FAIL sets `control.should_training_stop`. Findings go into the Trainer's
logs (`doctor/...` keys), so they reach TensorBoard / W&B when `attach(trainer)` puts this
callback first. Probes never import the rules: the judge comes from above.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from fgclip_doctor.probes.accumulator import Accumulator, read_all
from fgclip_doctor.probes.cross_entropy import CrossEntropyProbe
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.probes.subject import SubjectProbe
from fgclip_doctor.vocabulary import SCALE_OF_PARAM

#: a record -> the findings of the live rules on it (objects with .status "PASS" / "WARN" /
#: "FAIL" / "SKIP", .rule and .subject); fgclip_doctor/callback.py gives the default one
Judge = Callable[[ProbeRecord], list]


def _unwrap(model):
    while hasattr(model, "module"):
        model = model.module
    return model


def scale_params(model) -> dict[str, torch.nn.Parameter]:
    """Every learnable logit scale by name (FG-CLIP's three, CLIP's one, or any `*logit_scale*`)."""
    out = {}
    for name, p in _unwrap(model).named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if "logit_scale" in leaf:
            out[SCALE_OF_PARAM.get(leaf, name)] = p
    return out


class ProbeCallback(TrainerCallback):
    """Probes for a Trainer run: loss terms, candidates, bank, gradients, scales; history by step."""

    def __init__(
        self, interval: int = 5, abort_on: str | None = None, rank: int = 0, judge: Judge | None = None
    ) -> None:
        self.interval, self.abort_on, self.rank = max(1, interval), abort_on, rank
        self.judge = judge
        self.ce: CrossEntropyProbe | None = None
        self.subject: SubjectProbe | None = None
        self.group_acc: dict[str, Accumulator] = {}
        self.handles: list = []
        self.history: list[dict] = []
        self.forward_calls = 0
        self.scale_init: dict[str, float] = {}
        self.scale_value: dict[str, float] = {}
        self.groups: list[dict] = []
        self.lrs: dict[str, float] = {}
        self.logs: list[dict] = []
        self.findings: list = []
        self.steps_done = 0
        self.installed = False

    # ---- lifecycle -----------------------------------------------------------------------
    def install(self, model, optimizer=None) -> None:
        """Install every probe on `model` (idempotent)."""
        if self.installed:
            return
        model = _unwrap(model)
        self.ce = CrossEntropyProbe(self.rank).install()
        self.subject = SubjectProbe(model, self.ce).install()

        def count(mod, args):
            self.forward_calls += 1  # a host int: no sync
            self.ce.forward_call = self.forward_calls

        self.handles.append(model.register_forward_pre_hook(count))
        self.scale_init = {k: float(p.detach().float()) for k, p in scale_params(model).items()}
        if optimizer is not None:
            names = {id(p): n for n, p in model.named_parameters()}
            self.groups = [
                {
                    "name": g.get("name", f"group{i}"),
                    "lr": g.get("initial_lr", g.get("lr")),
                    "weight_decay": g.get("weight_decay"),
                    "params": [names[id(p)] for p in g["params"] if id(p) in names],
                }
                for i, g in enumerate(optimizer.param_groups)
            ]
        self.installed = True

    def close(self) -> None:
        """Remove every hook and patch (safe to call twice)."""
        if self.ce is not None:
            self.ce.remove()
        if self.subject is not None:
            self.subject.remove()
        for h in self.handles:
            h.remove()
        self.handles.clear()
        self.installed = False

    def __enter__(self) -> ProbeCallback:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def attach(self, trainer) -> ProbeCallback:
        """Add to `trainer` first, so the `doctor/...` log keys reach the reporting callbacks."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    # ---- Trainer events ------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.install(model, optimizer)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        # Sampled on the step before each read-back (and the first), like Cockpit's quantities.
        if optimizer is None or (state.global_step % self.interval != self.interval - 1 and state.global_step):
            return
        for i, group in enumerate(optimizer.param_groups):
            grads = [p.grad for p in group["params"] if p.grad is not None]
            if not grads:
                continue
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            name = group.get("name", f"group{i}")
            acc = self.group_acc.setdefault(name, Accumulator(("steps", "norm", "nonfinite"), (), ("norm_max",)))
            acc.add(torch.stack([torch.ones_like(norm), norm, (~torch.isfinite(norm)).float()]), None, norm.reshape(1))
            self.lrs[name] = group.get("lr")

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps_done = state.global_step
        if state.global_step % self.interval == 0:
            self.snapshot(state.global_step, model)
            if self.abort_on == "fail" and self.judge is not None and self._has_fail():
                control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        self.logs.append({"step": state.global_step, **logs})
        if self.findings:
            for status in ("FAIL", "WARN"):
                logs[f"doctor/{status.lower()}"] = sum(f.status == status for f in self.findings)
            for f in self.findings:
                if f.status == "FAIL":
                    logs[f"doctor/{f.rule}{'/' + f.subject if f.subject else ''}"] = 1

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.steps_done = state.global_step
        if not self.history or self.history[-1]["step"] != state.global_step:
            self.snapshot(state.global_step, model)
        self.close()

    # ---- read-back ----------------------------------------------------------------------
    def snapshot(self, step: int, model=None) -> dict:
        """Read every device statistic back (one transfer) and append it to `history`."""
        accs = {}
        if self.ce is not None:
            accs.update({f"term:{k}": a for k, a in self.ce.accumulators.items()})
            accs.update({f"loss:{k}": a for k, a in self.ce.losses.items()})
        if self.subject is not None:
            accs.update({f"subject:{k}": a for k, a in self.subject.acc.items()})
        accs.update({f"grad:{k}": a for k, a in self.group_acc.items()})
        values = read_all(accs)
        terms = {k[5:]: v for k, v in values.items() if k.startswith("term:")}
        for k, v in values.items():  # the every-call loss next to the sampled statistics
            if k.startswith("loss:") and k[5:] in terms:
                terms[k[5:]].update(v)
        snap = {
            "step": step,
            "forward_calls": self.forward_calls,
            "terms": terms,
            "subject": {k[8:]: v for k, v in values.items() if k.startswith("subject:")},
            "grads": {k[5:]: v for k, v in values.items() if k.startswith("grad:")},
            "bank": self.subject.bank_state() if self.subject is not None else None,
        }
        if model is not None:
            snap["scales"] = {k: float(p.detach().float()) for k, p in scale_params(model).items()}
            self.scale_value = snap["scales"]
        self.history.append(snap)
        return snap

    def record(self) -> ProbeRecord:
        """What was measured so far (the probes' column history is copied, not shared)."""
        ce = self.ce
        return ProbeRecord(
            history=self.history,
            forward_calls=self.forward_calls,
            steps_done=self.steps_done,
            scale_init=self.scale_init,
            scale_value=self.scale_value,
            groups=self.groups,
            lrs=self.lrs,
            terms=list(ce.accumulators) if ce else [],
            columns={t: list(c) for t, c in ce.columns.items()} if ce else {},
            rows=dict(ce.rows) if ce else {},
            dtypes=dict(ce.dtypes) if ce else {},
        )

    def _has_fail(self) -> bool:
        self.findings = self.judge(self.record())
        return any(f.status == "FAIL" for f in self.findings)


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
