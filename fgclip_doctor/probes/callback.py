"""ProbeCallback: the probes as a TrainerCallback; `fgclip_doctor.callback.DoctorCallback` adds the rules.

It observes, and steers only through `control` (transformers' callback contract): probes are
installed at train begin (on the model the Trainer hands its callbacks, so `add_callback` after
the Trainer is built works) and removed at train end or `close()` (also on error / Ctrl-C when
used as a context manager); statistics stay on the device and are read back every `interval`
optimizer steps, keyed by step (`history`). `record()` is what was measured, as a ProbeRecord.
A `judge(record) -> findings` given by the constructor is asked at each read-back; with
`abort_on="fail"` a FAIL (with "warn", a WARN too) sets `control.should_training_stop` and logs
one line (rule, subject, measured, step) and the problems through the `fgclip_doctor` logger.
The latest findings go into the `logs` dict of every `on_log` (`doctor/fail`, `doctor/warn`
counts, and `doctor/<rule>/<subject>` = 1 WARN, 2 FAIL, 0 once it passes again): transformers
hands that dict to the callbacks after this one, in list order. Trainer lists the reporting
integrations of `report_to` before the `callbacks=` it is given (4.x and 5.x alike), so the
keys reach TensorBoard / W&B when those come after the doctor: `report_to="none"` and
`callbacks=[DoctorCallback(...), TensorBoardCallback]`. `state.log_history` holds the copy the
Trainer took before the event, without them; `logs` here keeps every dict as the callbacks saw
it. Probes never import the rules: the judge comes from above.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from fgclip_doctor.probes.accumulator import Accumulator, read_all
from fgclip_doctor.probes.cross_entropy import CrossEntropyProbe
from fgclip_doctor.probes.placed import PlacedProbe
from fgclip_doctor.probes.record import ProbeRecord
from fgclip_doctor.probes.subject import SubjectProbe
from fgclip_doctor.vocabulary import SCALE_OF_PARAM

#: a record -> the findings of the live rules on it (objects with .status "PASS" / "WARN" /
#: "FAIL" / "SKIP", .rule and .subject); fgclip_doctor/callback.py gives the default one
Judge = Callable[[ProbeRecord], list]
#: abort_on -> the statuses that stop the run
STOP_ON = {None: (), "fail": ("FAIL",), "warn": ("FAIL", "WARN")}
#: TrainingArguments the record keeps (the rules read them as train.* facts when the launch is not known)
TRAINER_ARGS = ("per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "weight_decay")
#: the value of a `doctor/<rule>/<subject>` log key
LOG_LEVEL = {"WARN": 1, "FAIL": 2}
#: called after every optimizer step with (global_step, history): live's progress display
StepObserver = Callable[[int, list[dict]], None]

logger = logging.getLogger("fgclip_doctor")


def _status(finding) -> str:
    """The status as text: PASS, WARN, FAIL or SKIP (a finding's status may be a str Enum)."""
    return str(getattr(finding.status, "value", finding.status))


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
        self,
        interval: int = 5,
        abort_on: str | None = None,
        rank: int | None = None,
        judge: Judge | None = None,
        step_observer: StepObserver | None = None,
        sites: list[dict] | None = None,
        unplaced: dict[str, str] | None = None,
    ) -> None:
        if abort_on not in STOP_ON:
            raise ValueError(f"abort_on must be None, 'fail' or 'warn', got {abort_on!r}")
        self.interval, self.abort_on = max(1, interval), abort_on
        self.rank = rank  # None: the Trainer's process_index at train begin (0 outside a Trainer)
        self.world_size = 1
        self.trainer_args: dict = {}
        self.judge = judge
        self.step_observer = step_observer
        self.stopped_at: int | None = None  # the step at which abort_on stopped the run
        self.ce: CrossEntropyProbe | None = None
        self.subject: SubjectProbe | None = None
        self.group_acc: dict[str, Accumulator] = {}
        self.handles: list = []
        self.history: list[dict] = []
        self.forward_calls = 0
        self.scale_init: dict[str, float] = {}
        self.scale_value: dict[str, float] = {}
        self._scales: dict[str, torch.nn.Parameter] = {}
        self.scale_trainable: dict[str, bool] = {}  # requires_grad of each scale at install
        self.scale_grad_seen: dict[str, bool] = {}  # a gradient reached the scale before some optimizer step
        self.groups: list[dict] = []
        self.trainable: list[str] = []
        self.lrs: dict[str, float] = {}
        self.logs: list[dict] = []
        self.findings: list = []  # the judge's latest findings
        self.logged_keys: list[str] = []  # doctor/<rule>/<subject> keys logged so far (kept, 0 when fixed)
        self.steps_done = 0
        self.installed = False
        self.model_source: str | None = None
        # where the static reader says the terms, RoIAlign, box features and bank are (None: the
        # bundled subject, hooked by its classes); what was placed, what was not and why
        self.sites, self.unplaced = sites, unplaced
        self.placement: dict = {}

    # ---- lifecycle -----------------------------------------------------------------------
    def install(self, model, optimizer=None) -> None:
        """Install every probe on `model` (idempotent)."""
        if self.installed:
            return
        model = _unwrap(model)
        self.ce = CrossEntropyProbe(self.rank or 0)
        if self.sites is None:
            self.subject = SubjectProbe(model, self.ce).install()
            self.ce.install()
        else:
            placed = PlacedProbe(model, self.ce, self.sites, self.unplaced).install()
            self.subject = placed
            self.ce.install(patch=placed.fallback is not None)
            self.placement = {"placed": placed.placed, "missing": placed.missing, "fallback": placed.fallback}

        def count(mod, args):
            self.forward_calls += 1  # a host int: no sync
            self.ce.forward_call = self.forward_calls

        self.handles.append(model.register_forward_pre_hook(count))
        self.scale_init = {k: float(p.detach().float()) for k, p in scale_params(model).items()}
        self._scales = scale_params(model)
        self.scale_trainable = {k: bool(p.requires_grad) for k, p in self._scales.items()}
        self.trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        config = getattr(model, "config", None)
        self.model_source = None if config is None else str(getattr(config, "_name_or_path", "") or "")
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
        """`trainer.add_callback(self)`, returning self. It lands after the reporting integrations
        the Trainer built: for them to get the doctor/ keys, see the module's docstring."""
        trainer.add_callback(self)
        return self

    # ---- Trainer events ------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.rank is None:
            self.rank = getattr(args, "process_index", 0)
        self.world_size = getattr(args, "world_size", 1)
        self.trainer_args = trainer_args(args, state)
        self.install(model, optimizer)

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        for k, p in self._scales.items():  # a host check of .grad: no device sync
            self.scale_grad_seen[k] = self.scale_grad_seen.get(k, False) or p.grad is not None
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
            if self.judge is not None:
                self.findings = self.judge(self.record())
                stop = [f for f in self.findings if _status(f) in STOP_ON[self.abort_on]]
                if stop and self.stopped_at is None:
                    control.should_training_stop = True
                    self.stopped_at = state.global_step
                    log_stop(stop[0], state.global_step, self.findings)
        if self.step_observer is not None:
            self.step_observer(state.global_step, self.history)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        logs.update(self.log_values())  # the callbacks after this one (reporters listed after it) get them
        self.logs.append({"step": state.global_step, **logs})

    def log_values(self) -> dict[str, int]:
        """The doctor/ keys for the latest findings: counts, and a level per problem seen so far."""
        if not self.findings:  # not judged yet (a judge always returns findings)
            return {}
        out = {f"doctor/{s.lower()}": sum(_status(f) == s for f in self.findings) for s in ("FAIL", "WARN")}
        levels: dict[str, int] = {}
        for f in self.findings:
            key = f"doctor/{f.rule}" + (f"/{f.subject}" if f.subject else "")
            levels[key] = max(levels.get(key, 0), LOG_LEVEL.get(_status(f), 0))
            if levels[key] and key not in self.logged_keys:
                self.logged_keys.append(key)
        out.update({key: levels.get(key, 0) for key in self.logged_keys})
        return out

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.steps_done = state.global_step
        if not self.history or self.history[-1]["step"] != state.global_step:
            self.snapshot(state.global_step, model)
            if self.judge is not None:  # `findings` are the whole run's, also when shorter than interval
                self.findings = self.judge(self.record())
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
            world_size=self.world_size,
            trainer_args=dict(self.trainer_args),
            scale_init=self.scale_init,
            scale_value=self.scale_value,
            scale_trainable=dict(self.scale_trainable),
            scale_grad_seen=dict(self.scale_grad_seen),
            groups=self.groups,
            trainable=self.trainable,
            lrs=self.lrs,
            terms=list(ce.accumulators) if ce else [],
            columns={t: list(c) for t, c in ce.columns.items()} if ce else {},
            rows=dict(ce.rows) if ce else {},
            dtypes=dict(ce.dtypes) if ce else {},
            model_source=self.model_source,
            placement=dict(self.placement),
        )


def log_stop(finding, step: int, findings: list) -> None:
    """One line for the stop (rule, subject, measured, step), then every FAIL / WARN, one a line."""
    subject = f" ({finding.subject})" if getattr(finding, "subject", "") else ""
    logger.warning(
        "fgclip-doctor stopped the run at optimizer step %d: %s %s%s, measured %s",
        step,
        _status(finding),
        finding.rule,
        subject,
        getattr(finding, "measured", "") or "?",
    )
    found = [f for f in findings if _status(f) in ("FAIL", "WARN")]
    logger.warning(
        "fgclip-doctor findings at step %d:\n%s",
        step,
        "\n".join(f"  {_status(f)} {f.rule} {getattr(f, 'subject', '')}: {getattr(f, 'message', '')}" for f in found),
    )


def trainer_args(args, state) -> dict:
    """TRAINER_ARGS of the run, its optimizer steps and its LR warmup in optimizer steps."""
    out = {k: getattr(args, k) for k in TRAINER_ARGS if getattr(args, k, None) is not None}
    steps = getattr(state, "max_steps", 0) or 0
    if steps > 0:
        out["max_steps"] = steps
        if hasattr(args, "get_warmup_steps"):  # warmup_steps, or a ratio of the run
            out["warmup_steps"] = args.get_warmup_steps(steps)
    return out


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
