"""A queue of keys a loss term's logits are computed against (ALBEF / BLIP ITC, MoCo): the term's
candidates per row are the in-batch keys plus the queue's length.

    self.register_buffer("text_queue", torch.randn(embed_dim, self.queue_size))   # config queue_size
    text_feat_all = torch.cat([text_feat_m.t(), self.text_queue.clone().detach()], dim=1)
                                                   -> loss.global.queue 65536 (configs/Pretrain.yaml:12)

The queue is a 2-D buffer the model the launch builds holds (its shape read on abstract values),
concatenated along one of its dimensions in the forward that computes the term.
"""

from __future__ import annotations

import ast

from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.code.reader.astutil import call_name, constant, keyword, last
from fgclip_doctor.sources.code.reader.values import Const, Tensor


def queue_facts(facts: Facts, unknown: dict[str, str], read, losses) -> None:
    """loss.<term>.queue for each term computed in a forward that concatenates a held queue."""
    if read is None or losses is None:
        return
    program = read.interp.program
    for model in read.models:
        fwd = program.method(model.cls, "forward") if model.cls else None
        if fwd is None:
            continue
        lines = range(fwd.node.lineno, (fwd.node.end_lineno or fwd.node.lineno) + 1)
        for n in ast.walk(fwd.node):
            if not (isinstance(n, ast.Call) and last(call_name(n)) in ("cat", "concat") and n.args):
                continue
            if not isinstance(n.args[0], (ast.List, ast.Tuple)):
                continue
            dim = constant(keyword(n, "dim") or (n.args[1] if len(n.args) > 1 else ast.Constant(0)))
            for elt in n.args[0].elts:
                attr = next(
                    (
                        a.attr
                        for a in ast.walk(elt)
                        if isinstance(a, ast.Attribute) and isinstance(a.value, ast.Name) and a.value.id == "self"
                    ),
                    None,
                )
                held = model.attrs.get(attr) if attr else None
                if not (isinstance(held, Tensor) and len(held.shape) == 2 and dim in (0, 1, -1)):
                    continue
                size = held.shape[dim]
                for name, term in losses.terms.items():
                    if not any(at.startswith(f"{fwd.file.rel}:") and int(at.rpartition(":")[2]) in lines
                               for at in term.kinds.values()):  # fmt: skip
                        continue
                    facts.set(f"loss.{name}.keys_queued", True, f"{fwd.file.at(n)}: self.{attr}")
                    if facts.value("bank.enabled") is False:  # not "no queue of negatives": a queue with no warmup
                        why = f"{fwd.file.at(n)}: self.{attr} is a queue of keys in the loss from the first step"
                        facts.set("bank.enabled", False, f"{why} (no warmup bank)")
                    if isinstance(size, Const) and isinstance(size.value, int) and size.value > 0:
                        src = f"{fwd.file.at(n)}: self.{attr} ({size.config or size.at})"
                        facts.set(f"loss.{name}.queue", size.value, src)
                    else:
                        why = size.why if hasattr(size, "why") else "not a number"
                        unknown[f"loss.{name}.queue"] = f"{fwd.file.at(n)}: the length of self.{attr}: {why}"
