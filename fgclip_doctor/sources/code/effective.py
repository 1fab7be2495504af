"""Effective values of the bundled subject: build its model as `fgclip.train` would, on the meta device.

What the code really uses beats what the config says: a warmup or a scale hard-coded in
`__init__` shows up here because the values are read from the built modules, not from flags.
No weights are allocated and nothing is downloaded: every tensor is created on the meta device
except single-element ones (logit scales, bank pointers), which are materialised on the CPU so
their values can be read; pretrained weights are replaced by a lazy loader that builds the
model on meta and fills those scalars from the checkpoint file (header + a few bytes).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from fgclip_doctor.errors import DoctorInputError

_CONSTRUCTORS = _device_constructors()
# In-place ops that only write data (weight init, copies): a no-op on a meta tensor.
_DATA_WRITES = {
    "normal_",
    "uniform_",
    "fill_",
    "zero_",
    "copy_",
    "clamp_",
    "mul_",
    "add_",
    "sub_",
    "div_",
    "exponential_",
    "bernoulli_",
    "random_",
    "log_normal_",
    "geometric_",
    "cauchy_",
    "masked_fill_",
    "index_copy_",
    "__setitem__",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "orthogonal_",
}


class ScalarsOnCPU(TorchFunctionMode):
    """Tensor factories default to the meta device; single-element results go to the CPU.

    In-place ops on meta tensors (weight init) return at once: there is no data to write, and
    meta's Python reference kernels would make building a ViT-L cost seconds.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if getattr(func, "__name__", "") in _DATA_WRITES:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target  # in-place init of a meta tensor (normal_, copy_, ...): no data, nothing to do
        if func in _CONSTRUCTORS and kwargs.get("device") is None:
            out = func(*args, **{**kwargs, "device": "meta"})
            if out.numel() <= 1:
                out = func(*args, **{**kwargs, "device": "cpu"})
            return out
        return func(*args, **kwargs)


def _lazy_from_pretrained(read_scalars):
    """A stand-in for `PreTrainedModel.from_pretrained`: meta model + scalars from the file."""

    def from_pretrained(cls, path, *args, **kwargs):
        config_kwargs = {k: v for k, v in kwargs.items() if not k.startswith(("torch_dtype", "dtype", "device"))}
        try:
            config = cls.config_class.from_pretrained(path, **config_kwargs)
        except (OSError, ValueError) as err:
            raise DoctorInputError(path, f"cannot read config.json ({str(err).splitlines()[0]})") from None
        model = cls(config)
        values = read_scalars(path)
        state = model.state_dict()
        with torch.no_grad():
            for name, (value, _source) in values.items():
                if name in state and state[name].numel() == 1 and state[name].device.type == "cpu":
                    state[name].fill_(float(value if not isinstance(value, list) else value[0]))
        return model

    return from_pretrained


@contextlib.contextmanager
def lazy_build(read_scalars):
    """Within this block, models build on meta and `from_pretrained` reads only scalars."""
    from transformers import CLIPModel

    from fgclip.model import FGCLIPModel

    patch = classmethod(_lazy_from_pretrained(read_scalars))
    with (
        mock.patch.object(CLIPModel, "from_pretrained", patch),
        mock.patch.object(FGCLIPModel, "from_pretrained", patch),
        ScalarsOnCPU(),
    ):
        yield


def build_subject_model(margs, dargs, from_openai: bool, tokenizer, read_scalars):
    """`fgclip.train.build_model` itself, run under `lazy_build` (meta device, lazy weights)."""
    from fgclip.train import build_model

    with lazy_build(read_scalars):
        return build_model(margs, dargs, SimpleNamespace(from_openai=from_openai), tokenizer)


def built_optimizer(model, values: dict) -> tuple[list[dict], dict[str, float | None]]:
    """The optimizer `FGCLIPTrainer.create_optimizer` builds for this launch, and what its step hooks do.

    Returns (groups, clamps): groups as the optimizer holds them ({name, lr, weight_decay,
    params: [parameter names]}); clamps: for every scale parameter, the ceiling the optimizer's
    post-step hooks put on it (None: the hooks leave it where it is). The hooks are run: each
    scale (a CPU scalar on the meta build) is set to 1e3 first, read back, then restored, so a
    clamp is what the code really does after a step, not a config flag read back. The optimizer
    class is a plain SGD stand-in (the trainer's choice of class changes neither groups nor hooks).
    """
    from fgclip.model import SCALE_NAMES
    from fgclip.trainer import FGCLIPTrainer, Trainer

    args = SimpleNamespace(learning_rate=values["learning_rate"], weight_decay=values["weight_decay"])
    host = SimpleNamespace(
        optimizer=None,
        model=model,
        args=args,
        text_model_lr=values.get("text_model_lr"),
        roi_projection_lr=values.get("roi_projection_lr"),
        logit_scale_weight_decay=bool(values.get("logit_scale_weight_decay")),
    )
    plain = staticmethod(lambda targs, m: (torch.optim.SGD, {"lr": targs.learning_rate}))
    with mock.patch.object(Trainer, "get_optimizer_cls_and_kwargs", plain):
        optimizer = FGCLIPTrainer.create_optimizer(host)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        {
            "name": g.get("name", f"group{i}"),
            "lr": g["lr"],
            "weight_decay": g["weight_decay"],
            "params": [names[id(p)] for p in g["params"] if id(p) in names],
        }
        for i, g in enumerate(optimizer.param_groups)
    ]
    scales = {n: p for n, p in model.named_parameters() if n in SCALE_NAMES and not p.is_meta}
    before = {n: p.detach().clone() for n, p in scales.items()}
    with torch.no_grad():
        for p in scales.values():
            p.fill_(1e3)
        for hook in list(optimizer._optimizer_step_post_hooks.values()):  # torch.optim.Optimizer's registry
            hook(optimizer, (), {})
        after = {n: float(p) for n, p in scales.items()}
        for n, p in scales.items():
            p.copy_(before[n])
    return groups, {n: (v if v < 1e3 else None) for n, v in after.items()}


def model_dir_kind(path: Path) -> str | None:
    """'clip' / 'fgclip' / other model_type of an HF model dir, or None without config.json."""
    import json

    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text()).get("model_type", "")
    except (OSError, ValueError) as err:
        raise DoctorInputError(cfg, f"invalid JSON ({err})") from None
