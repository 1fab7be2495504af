"""Where the run's batch and learning rate are used, as the abstract run (interp.py) reaches them:
the `batch_size` handed to a DataLoader, the `lr` handed to an optimizer. A config key or flag
named `batch_size` that the code never hands to a loader is not the run's batch; the value a
loader gets from a key of another name is (launch_code.py prefers these over names).

    loader = DataLoader(ds, batch_size=cfg["loader"]["per_gpu"])   -> uses["batch_size"]
    transformers.Trainer(...) or a subclass                        -> uses["trainer"] (its own loader wins)
    opt = torch.optim.AdamW(groups, lr=cfg["optim"]["peak"])      -> uses["lr"]
"""

from __future__ import annotations

from dataclasses import dataclass

from fgclip_doctor.sources.code.reader.values import Const, Unknown, Val

#: optimizer classes outside torch.optim that take `lr` like torch's (timm, apex, bitsandbytes, transformers)
OPTIMIZERS = frozenset({"AdamW", "Adam", "SGD", "Lamb", "LAMB", "Lion", "Adafactor", "FusedAdam", "AdamW8bit"})


@dataclass(frozen=True)
class Use:
    value: Val  # what the call gets (Const with its flag / config provenance, or Unknown saying why)
    at: str  # file:line of the call
    call: str  # "DataLoader" / "AdamW"
    training: bool | None  # a loader that shuffles (or samples) is the training one; None: not said


def record_use(uses: dict[str, list[Use]], dotted: str, args: list[Val], kwargs: dict[str, Val], at: str) -> None:
    """Note a DataLoader's batch_size / an optimizer's lr (keyword, else its positional slot)."""
    name = dotted.rpartition(".")[2]
    if name.endswith("Trainer") and dotted.startswith("transformers."):  # it builds the training loader
        uses.setdefault("trainer", []).append(Use(Const(dotted, at), at, name, True))
    elif name == "DataLoader":
        value = kwargs.get("batch_size", args[1] if len(args) > 1 else None)
        if value is None:
            value = Const(1, f"{at}: DataLoader's default batch_size")
        shuffled = kwargs.get("shuffle")
        training = True if "sampler" in kwargs else shuffled.value if isinstance(shuffled, Const) else None
        uses.setdefault("batch_size", []).append(Use(value, at, name, training))
    elif (dotted.startswith("torch.optim.") and name[:1].isupper()) or name in OPTIMIZERS:
        if "lr_scheduler" in dotted:
            return
        value = kwargs.get("lr", args[1] if len(args) > 1 else None)
        if value is not None:
            uses.setdefault("lr", []).append(Use(value, at, name, True))


def used_value(uses: list[Use]) -> tuple[Val, str] | None:
    """(value, where it is used) of one use: the training loader's when several differ; Unknown
    when they still differ; None when there is no use, or a use hands no batch (`batch_size=None`)."""
    uses = [u for u in uses if not _evaluation(u.value)]  # `batch_size=args.batch_size_val`: not the training one
    if not uses:
        return None
    distinct = {_key(u.value) for u in uses}
    if len(distinct) > 1:
        training = [u for u in uses if u.training]
        if training and len({_key(u.value) for u in training}) == 1:
            uses = training
        else:
            shown = ", ".join(f"{u.at} {u.call}" for u in uses[:3])
            return Unknown(f"the code hands different values at {shown}: which one trains is not read"), uses[0].at
    u = uses[0]
    if isinstance(u.value, Const) and u.value.value is None:
        return None
    return u.value, f"{u.at} {u.call}"


def _evaluation(value: Val) -> bool:
    """A value named for evaluation (the flag's dest or the config key says val / eval / test)."""
    if not isinstance(value, Const):
        return False
    name = (value.flag or value.config.partition(" ")[2]).lower()
    return any(w in name.replace(".", "_").split("_") for w in ("val", "eval", "test", "valid", "validation"))


def _key(value: Val) -> object:
    return ("c", repr(value.value)) if isinstance(value, Const) else ("u", getattr(value, "why", id(value)))


#: run facts a use site decides: fact -> (use, what is handed, to what)
USED_FACTS = {
    "train.per_device_batch": ("batch_size", "the batch_size handed to the DataLoader"),
    "train.learning_rate": ("lr", "the lr handed to the optimizer"),
}
_LIBRARY_CALL = "an argument the run passes at each call"  # a Trainer hook's own arguments (HF fills them)


def apply_uses(facts, uses: dict[str, list[Use]]) -> None:
    """Batch and LR as the code uses them, over what the flags and config keys say by name: the
    same value keeps its source; another value (a key of another name) replaces it, citing both
    the key and the call; a value not known at the call leaves the fact unknown, saying why."""
    for fact, (use, what) in USED_FACTS.items():
        if use == "batch_size" and uses.get("trainer"):
            continue  # a transformers Trainer loads with per_device_train_batch_size: other loaders are not the run's
        got = used_value(uses.get(use, []))
        if got is None:
            continue
        value, at = got
        if isinstance(value, Unknown):
            if value.why.endswith(_LIBRARY_CALL):
                continue
            facts.forget(fact)
            facts.mark_unknown(fact, f"{at}: {what} is not known: {value.why}")
            continue
        if not isinstance(value.value, (int, float)) or isinstance(value.value, bool):
            continue
        origin = value.config or value.at
        if facts.value(fact) == value.value and facts.source(fact) in (origin, value.at):
            continue
        facts.set(fact, value.value, f"{origin} ({what.replace('the ', '', 1)} at {at})")
