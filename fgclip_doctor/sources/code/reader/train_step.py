"""How the run steps its optimizer and what precision its step computes in, read from what the code
does, not from what its flags are called:

    for data_iter, batch in enumerate(loader):                      # the training loop
        with torch.cuda.amp.autocast(enabled=not args.disable_amp):  -> fp16 autocast unless --disable-amp
            loss = criterion(model(batch)) / args.update_freq
        scaler.scale(loss).backward()
        if (data_iter + 1) % args.update_freq != 0:                  -> accumulation = --update-freq
            continue
        scaler.step(optimizer)                                       # the step this reads from

An optimizer step the launch reaches (interp.reached, not in a branch it does not take) anchors both
readings. Its accumulation is the divisor of a `%` test that guards it (an enclosing `if`, or an
earlier `if ...: continue` in the loop); a step in a loop under no test that changes per batch steps
every batch (accumulation 1); `with accelerator.accumulate(model)` takes Accelerator's
gradient_accumulation_steps. A guard read no further (`if count == k:`) leaves it unknown, saying why.
Its precision is the torch autocast in the same function: dtype (bfloat16, else float16: CUDA's
default) and whether `enabled` holds for this launch. Steps run by a library (a transformers Trainer,
DeepSpeed's engine, Lightning) give nothing here: their own arguments say.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from fgclip_doctor.sources.code.reader.astutil import UNKNOWN, call_name, keyword, last
from fgclip_doctor.sources.code.reader.paths import PathEval
from fgclip_doctor.sources.code.reader.program import External, Program
from fgclip_doctor.sources.code.reader.source import SourceFile

_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_HALF = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Reading:
    """A value read from the code (`value` UNKNOWN: `why` says what hides it) and where."""

    value: Any
    at: str
    why: str = ""


@dataclass
class StepReading:
    accumulation: Reading | None = None  # None: no step of the code's own was read
    precision: Reading | None = None  # value "fp16" | "bf16" | "fp32"
    fix_dest: str = ""  # the flag whose negation enables autocast (`enabled=not args.disable_amp`)
    fix_at: str = ""  # the autocast to change otherwise


def read_train_step(
    program: Program, files: list[SourceFile], reached: set[int], dead: set[int], ev: PathEval
) -> StepReading:
    parents = {id(c): p for f in files for p in ast.walk(f.tree) for c in ast.iter_child_nodes(p)}
    calls = [(f, c) for f in files for c in ast.walk(f.tree) if isinstance(c, ast.Call)]
    zeroed = {_receiver(c) for _, c in calls if _called(c, "zero_grad")}
    steps = [(f, c) for f, c in calls if _is_step(c, zeroed)]
    steps = [(f, c) for f, c in steps if id(c) not in dead and id(_function(c, parents)) in reached]
    out = StepReading()
    engine = _deepspeed(program, files, parents, reached, dead)
    if engine:  # its engine's step accumulates by the DeepSpeed config (and casts by it)
        out.accumulation = _deepspeed_accumulation(files, engine, dead, ev)
        return out
    if not steps:
        return out
    readings = [_accumulation(files, f, c, (parents, dead, reached), ev) for f, c in steps]
    out.accumulation = _agree(readings, "the optimizer steps")
    casts = [
        (f, c)
        for f, fn in {id(_function(c, parents)): (f, _function(c, parents)) for f, c in steps}.values()
        for c in ast.walk(fn)
        if isinstance(c, ast.Call) and id(c) not in dead and _torch_autocast(program, f, c)
    ]
    kinds = [r for r in (_autocast(f, c, ev) for f, c in casts) if r is not None]
    if kinds:
        out.precision = _agree(kinds, "the autocasts")
        f, c = casts[0]
        out.fix_dest, out.fix_at = _negated_flag(keyword(c, "enabled")), f.at(c)
    return out


# --- the optimizer step and its cadence -------------------------------------------------------
def _is_step(call: ast.Call, zeroed: set[str]) -> bool:
    """`optimizer.step()` (an object whose gradients the code also zeroes, or named so),
    `scaler.step(optimizer)`: not a scheduler's step, nor DeepSpeed's engine (its config decides)."""
    if not _called(call, "step"):
        return False
    receiver = _receiver(call)
    owner = last(receiver).lower()
    if "sched" in owner or "engine" in owner:
        return False
    if "scaler" in owner and call.args:
        return True
    return receiver in zeroed or "optim" in owner or owner == "opt"


def _deepspeed(program: Program, files: list[SourceFile], parents, reached: set[int], dead: set[int]) -> str:
    """file:line of `deepspeed.initialize` used (called, or taken as `ds_init = deepspeed.initialize`
    as EVA-CLIP does) where the launch goes; '' when it is not."""
    for f in files:
        for n in ast.walk(f.tree):
            if not isinstance(n, ast.Attribute) or n.attr != "initialize" or id(n) in dead:
                continue
            target = program.resolve(f, n)
            if isinstance(target, External) and target.dotted.startswith("deepspeed"):
                if id(_function(n, parents)) in reached or _function(n, parents) is None:
                    return f.at(n)
    return ""


def _deepspeed_accumulation(files: list[SourceFile], engine: str, dead: set[int], ev: PathEval) -> Reading:
    """The config dict the code builds for DeepSpeed (`"gradient_accumulation_steps": args.x`), else unknown."""
    for f in files:
        for d in ast.walk(f.tree):
            if not isinstance(d, ast.Dict) or id(d) in dead:
                continue
            for k, v in zip(d.keys, d.values):
                if isinstance(k, ast.Constant) and k.value == "gradient_accumulation_steps":
                    value = _batches(f, v, ev)
                    said = f"{f.at(k)} DeepSpeed config gradient_accumulation_steps = `{ast.unparse(v)[:40]}`"
                    if isinstance(value, int):
                        return Reading(value, f"{said} (DeepSpeed steps: {engine})")
                    return Reading(UNKNOWN, f.at(k), f"{said}: its value is not known ({value})")
    why = f"{engine}: DeepSpeed steps the optimizer: its config's gradient_accumulation_steps decides"
    return Reading(UNKNOWN, engine, why)


def _batches(f: SourceFile, expr: ast.expr, ev: PathEval) -> int | str:
    """The batches per optimizer step `expr` gives this launch (an int >= 1), else what hides it."""
    ev.missing.clear()
    k = ev.evaluate(f, expr)
    if isinstance(k, int) and not isinstance(k, bool) and k >= 1:
        return k
    return ", ".join(dict.fromkeys(ev.missing)) or "computed at run time"


def _called(call: ast.Call, method: str) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == method


def _receiver(call: ast.Call) -> str:
    """`self.optimizer` of `self.optimizer.step()`."""
    return call_name(call).rpartition(".")[0]


def _function(node: ast.AST, parents: dict[int, ast.AST]) -> ast.AST | None:
    while node is not None and not isinstance(node, _FUNCS):
        node = parents.get(id(node))
    return node


def _accumulation(
    files, f: SourceFile, step: ast.Call, run: tuple, ev: PathEval, at: str = "", depth: int = 0
) -> Reading:
    """The cadence of `step` (the optimizer's step, or a call of the helper holding it: `at` is the step);
    `run`: (parents, dead, reached) of the abstract run."""
    at, (parents, dead, _) = at or f.at(step), run
    loop, guards, divisors, skips = None, [], [], []
    child, node = step, parents.get(id(step))
    while node is not None and not isinstance(node, _FUNCS):
        if isinstance(node, ast.If) and child is not node.test:
            other = node.orelse if child in node.body else node.body
            if _mod(node.test):
                divisors.append(node)
            elif not _terminates(other):  # `if finite: step else: sys.exit(1)` skips no step
                guards.append(node)
        if isinstance(node, ast.With) and any(_is_accumulate(i.context_expr) for i in node.items):
            return _accelerate(files, f, node, ev)
        skips += _earlier_skips(node, child, dead) if loop is None else []
        if isinstance(node, _LOOPS) and loop is None:
            loop = node
        child, node = node, parents.get(id(node))
    if loop is None and node is not None:  # the function's own body: `if len(kept) < k: return` (open_clip)
        skips += _earlier_skips(node, child, dead)
    divisors += [s for s in skips if _mod(s.test)]
    if not divisors and (exit_ := next((s for s in skips if not _terminates(s.body)), None)) is not None:
        test = ast.unparse(exit_.test)[:60]
        return Reading(
            UNKNOWN, at, f"{f.at(exit_)}: the optimizer step ({at}) is skipped when `{test}`: not read further"
        )
    if divisors:
        guard = divisors[0]
        k = _batches(f, _mod(guard.test).right, ev)
        said = f"{f.at(guard)} steps the optimizer ({at}) every `{ast.unparse(_mod(guard.test).right)}` batches"
        return Reading(k, said) if isinstance(k, int) else Reading(UNKNOWN, at, f"{said}: its value is not known ({k})")
    if loop is None:  # a helper (`backward(args, loss, scaler, optimizer, model)`): where it is called
        return _through_callers(files, f, node, guards, run, ev, at, depth)
    varying = _assigned_in(loop)
    if gated := next((g for g in guards if _names(g.test) & varying), None):
        return _only_when(f, gated, at)
    return Reading(1, f"{at}: the optimizer steps on every batch of the loop at {f.at(loop)}")


def _through_callers(files, f, fn, guards, run: tuple, ev, at: str, depth: int) -> Reading:
    """A step in a function with no loop of its own: read at each call of that function the run
    reaches (one level up, twice at most). A test in it on an argument that changes per batch, or an
    earlier return, leaves it unknown."""
    parents, dead, reached = run
    name = fn.name if fn is not None else ""
    calls = [(g, c) for g in files for c in ast.walk(g.tree) if isinstance(c, ast.Call) and id(c) not in dead]
    calls = [(g, c) for g, c in calls if name and _calls(c, name) and id(_function(c, parents)) in reached]
    if not calls or depth >= 2:
        return Reading(
            UNKNOWN, at, f"{at}: the optimizer steps in {name or 'module code'}(), called from code not read"
        )
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    params = params[1:] if params[:1] == ["self"] else params
    readings = []
    for g, call in calls:
        caller = _function(call, parents)
        loop = next((n for n in ast.walk(caller) if isinstance(n, _LOOPS)), caller) if caller else None
        varying = _assigned_in(loop) if loop is not None else set()
        per_batch = {p for p, a in zip(params, call.args) if _names(a) & varying}
        if gated := next((t for t in guards if _names(t.test) & per_batch), None):
            return _only_when(f, gated, at)
        readings.append(_accumulation(files, g, call, run, ev, at, depth + 1))
    return _agree(readings, f"the calls of {name}()")


def _calls(call: ast.Call, name: str) -> bool:
    """`name(...)` or `self.name(...)`: not `loss.backward()` for a helper named backward."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == name
    return isinstance(func, ast.Attribute) and func.attr == name and ast.unparse(func.value) == "self"


def _only_when(f: SourceFile, guard: ast.If, at: str) -> Reading:
    test = ast.unparse(guard.test)[:60]
    return Reading(UNKNOWN, at, f"{f.at(guard)}: the optimizer steps ({at}) only when `{test}`: not read further")


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _terminates(stmts: list[ast.stmt]) -> bool:
    """The block ends the run: a raise, `sys.exit(...)`, `exit(...)`."""
    for n in (x for s in stmts for x in ast.walk(s)):
        if isinstance(n, ast.Raise) or (isinstance(n, ast.Call) and call_name(n) in ("sys.exit", "exit", "os._exit")):
            return True
    return False


def _mod(test: ast.expr) -> ast.BinOp | None:
    return next((n for n in ast.walk(test) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod)), None)


def _earlier_skips(node: ast.AST, child: ast.AST, dead: set[int]) -> list[ast.If]:
    """The skips in the statements of `node`'s block that run before `child` (the step's branch)."""
    for stmts in _blocks(node):
        if child in stmts:
            return [s for s in _skips(stmts[: stmts.index(child)]) if id(s) not in dead]
    return []


def _skips(stmts: list[ast.stmt]) -> list[ast.If]:
    """`if <test>: continue` / `return` in these statements, nested in other blocks too (open_clip's
    `% accum_freq` test sits in the `else:` of `if args.accum_freq == 1:`), not in an inner loop or function."""
    out, todo = [], list(stmts)
    while todo:
        s = todo.pop(0)
        if isinstance(s, (*_LOOPS, *_FUNCS, ast.ClassDef)):
            continue
        if isinstance(s, ast.If) and any(isinstance(n, (ast.Continue, ast.Return)) for n in s.body):
            out.append(s)
        for block in _blocks(s):
            todo += block
        todo += [h for t in getattr(s, "handlers", []) for h in t.body]
    return out


def _blocks(node: ast.AST) -> list[list[ast.stmt]]:
    return [b for b in (getattr(node, k, None) for k in ("body", "orelse", "finalbody")) if isinstance(b, list)]


def _assigned_in(loop: ast.AST) -> set[str]:
    """Names that change per batch: the loop's targets and every name bound in its body."""
    out: set[str] = set()
    for n in ast.walk(loop):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
    return out


def _is_accumulate(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Call) and last(call_name(expr)) == "accumulate"


def _accelerate(files: list[SourceFile], f: SourceFile, with_node: ast.With, ev: PathEval) -> Reading:
    """`with accelerator.accumulate(model):` steps every Accelerator(gradient_accumulation_steps=k) batches."""
    at = f.at(with_node)
    for g in files:
        for c in ast.walk(g.tree):
            if isinstance(c, ast.Call) and last(call_name(c)) == "Accelerator":
                k = keyword(c, "gradient_accumulation_steps")
                if k is None:
                    why = f"{g.at(c)}: Accelerator() takes it from `accelerate launch` or its config, not read"
                    return Reading(UNKNOWN, at, why)
                value = _batches(g, k, ev)
                if isinstance(value, int):
                    return Reading(value, f"{at} accumulate, {g.at(c)} gradient_accumulation_steps")
                return Reading(UNKNOWN, at, f"{g.at(c)}: gradient_accumulation_steps={ast.unparse(k)[:40]} not known")
    return Reading(UNKNOWN, at, f"{at}: accumulate() of an Accelerator not read")


def _agree(readings: list[Reading], what: str) -> Reading:
    known = [r for r in readings if r.value is not UNKNOWN]
    if len(known) == len(readings) and len({r.value for r in known}) == 1:
        return known[0]
    if not known:
        return readings[0]
    shown = ", ".join(f"{r.value if r.value is not UNKNOWN else 'unknown'} at {r.at}" for r in readings[:3])
    return Reading(UNKNOWN, readings[0].at, f"{what} differ: {shown}")


# --- precision: torch's autocast in the step's function -----------------------------------------
def _torch_autocast(program: Program, f: SourceFile, call: ast.Call) -> bool:
    """torch.autocast / torch.cuda.amp.autocast / torch.amp.autocast by any import of them (not
    accelerate's or a helper of the code's own that picks a dtype from a flag)."""
    target = program.resolve(f, call.func)
    return isinstance(target, External) and target.dotted.startswith("torch.") and target.dotted.endswith("autocast")


def _autocast(f: SourceFile, call: ast.Call, ev: PathEval) -> Reading | None:
    at = f"{f.at(call)} {ast.unparse(call)[:80]}"
    device = keyword(call, "device_type")
    first = call.args[0] if call.args else None
    positional_device = isinstance(first, ast.Constant) and isinstance(first.value, str)
    device = device if device is not None else first if positional_device else None
    if isinstance(device, ast.Constant) and device.value != "cuda":
        return None  # CPU autocast (an eval or a test path), not the GPU run's precision
    enabled = keyword(call, "enabled")
    if enabled is None and first is not None and not positional_device:
        enabled = first  # torch.cuda.amp.autocast(enabled, dtype)
    ev.missing.clear()
    on = True if enabled is None else truth_of(f, enabled, ev)
    if on is UNKNOWN:
        missing = ", ".join(dict.fromkeys(ev.missing)) or "computed at run time"
        return Reading(UNKNOWN, at, f"{f.at(call)}: whether autocast is on is not known ({missing})")
    if not on:
        return Reading("fp32", f"{at}: autocast off for this launch")
    dtype = keyword(call, "dtype")
    if isinstance(dtype, ast.IfExp):  # `torch.bfloat16 if args.bf16 else torch.float16`
        pick = truth_of(f, dtype.test, ev)
        if pick is UNKNOWN:
            return Reading(UNKNOWN, at, f"{f.at(call)}: autocast's dtype depends on `{ast.unparse(dtype.test)[:40]}`")
        dtype = dtype.body if pick else dtype.orelse
    kind = "fp16" if dtype is None else _HALF.get(last(ast.unparse(dtype)), UNKNOWN)
    if kind is UNKNOWN:
        return Reading(UNKNOWN, at, f"{f.at(call)}: autocast's dtype `{ast.unparse(dtype)[:40]}` is not read")
    return Reading(kind, f"{at}: {'float16 (CUDA default)' if dtype is None else last(ast.unparse(dtype))} autocast")


def truth_of(f: SourceFile, node: ast.expr, ev: PathEval) -> Any:
    """True / False / UNKNOWN of a test on the launch's values (`not args.x`, `args.p == "amp"`)."""
    v = ev.evaluate(f, node)
    return UNKNOWN if v is UNKNOWN else bool(v)


def _negated_flag(enabled: ast.expr | None) -> str:
    """`enabled=not args.disable_amp` -> "disable_amp" (the flag that turns autocast off)."""
    if isinstance(enabled, ast.UnaryOp) and isinstance(enabled.op, ast.Not):
        if isinstance(enabled.operand, ast.Attribute):
            return enabled.operand.attr
    return ""


# --- into facts (launch_code.py, after the facts read by flag name) ---------------------------
def apply_step(facts: Any, step: StepReading, option_of) -> None:
    """What the code's own step does, over what flags and config keys say by name: a value read
    from the step replaces another value (citing the step; the same value cites both); an
    unknown one leaves a name's value standing, else makes the fact unknown with its reason.
    `option_of(dest)`: the flag as the parser spells it."""
    acc = step.accumulation
    if acc is not None and acc.value is not UNKNOWN:
        _set(facts, "train.grad_accum", acc.value, acc.at)
    elif acc is not None and "train.grad_accum" not in facts:
        facts.mark_unknown("train.grad_accum", acc.why)
    prec = step.precision
    if prec is not None and prec.value is not UNKNOWN:
        _set(facts, "train.fp16", prec.value == "fp16", prec.at)
        _set(facts, "train.bf16", prec.value == "bf16", prec.at)
        if prec.value == "fp16" and "code.fix.fp16" not in facts:
            off = f"{option_of(step.fix_dest)} (fp32), or " if step.fix_dest else ""
            facts.set("code.fix.fp16", f"{off}autocast(dtype=torch.bfloat16) at {step.fix_at}", step.fix_at)
    elif prec is not None and "train.fp16" not in facts:
        facts.mark_unknown("train.fp16", prec.why)


def _set(facts: Any, name: str, value: Any, at: str) -> None:
    if name in facts and facts.value(name) == value and at not in facts.source(name):
        at = f"{facts.source(name)}; {at}"  # the flag (or config key) by name, and the code that uses it
    facts.set(name, value, at)
