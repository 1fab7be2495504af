"""Where `live` hooks code the doctor did not write: probe sites, read from what the loss terms
compute (losses.py) and from the model the launch builds (model_read.py), never from names.

A site is plain data (JSON: the child bootstrap gets it as is):

    {"what": "term", "term": "region", "module": "fgclip.model.fgclip_tiny",
     "qualname": "FineGrainedCLIP.pair_loss", "kind": "method", "at": "fgclip/model/fgclip_tiny.py:62"}

- a loss term: the deepest function on the way from the model's forward to the term's loss
  primitive(s) that no other term's way passes through (a loss head's forward, a `pair_loss`
  method, a module-level `clip_loss`); while it runs, its cross-entropy calls are that term's.
- `roi`: a RoIAlign-like call: torchvision.ops roi_align / roi_pool (by the name the code calls
  it), a held RoIAlign / RoIPool / MultiScaleRoIAlign module, or the user's own function that
  reads its first argument as a [B, C, H, W] map (`_, _, h, w = feature_map.shape`) and is called
  from the box-feature method.
- `box_features`: the method whose output is the region term's image-side input (the first
  argument of the call that leads to the region term, traced to `x = self.<method>(...)`).
- `bank`: the model attribute holding the memory bank (model_read.py's BankRead).

kind: "module" (an nn.Module's forward: forward hooks on its instances), "method" (wrapped on the
instances that have it, never on the class), "function" (a module-level function, replaced by
`name` in the namespace of `caller`, the module whose code calls it, for the run only),
"attribute" (`name`: the model's submodule, hooked). A term that no function of its own computes
(one function computes several terms) is not placed: `unplaced[term]` says why.
"""

from __future__ import annotations

import ast

from fgclip_doctor.sources.code.reader.astutil import call_name, last
from fgclip_doctor.sources.code.reader.program import Defn, External, Program

#: torchvision.ops pooling of boxes on a feature map (functions and modules)
ROI_FUNCTIONS = frozenset({"roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool"})
ROI_MODULES = frozenset({"RoIAlign", "RoIPool", "PSRoIAlign", "PSRoIPool", "MultiScaleRoIAlign"})


def _owner(fn: Defn) -> ast.ClassDef | None:
    for node in ast.walk(fn.file.tree):
        if isinstance(node, ast.ClassDef) and fn.node in node.body:
            return node
    return None


def _qual(fn: Defn) -> str:
    cls = _owner(fn)
    return f"{cls.name}.{fn.node.name}" if cls is not None else fn.node.name


def _site(what: str, fn: Defn, caller: Defn | None, program: Program, **extra) -> dict:
    """A site for function / method `fn` (called from `caller`)."""
    cls = _owner(fn)
    site = {"what": what, "module": fn.file.module, "at": fn.file.at(fn.node), **extra}
    if cls is not None:
        site["qualname"] = f"{cls.name}.{fn.node.name}"
        site["kind"] = "module" if fn.node.name == "forward" else "method"
        return site
    site["qualname"] = fn.node.name
    site["kind"] = "function"
    site["caller"] = caller.file.module if caller is not None else fn.file.module
    site["name"] = fn.node.name
    if caller is not None:  # the name the caller's module calls it by (`from x import f as g`)
        for n in ast.walk(caller.node):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and program.resolve(caller.file, n.func) == fn:
                site["name"] = n.func.id
                break
    return site


def term_sites(losses, program: Program) -> tuple[list[dict], dict[str, str]]:
    """One site per loss term a function of its own computes; {term: why} for the others."""
    sites, unplaced = [], {}
    terms = losses.terms if losses is not None else {}
    for name, term in sorted(terms.items()):
        if not term.stacks:
            if losses.hf_model:
                unplaced[name] = (
                    f"{losses.hf_at}: transformers {losses.hf_model} computes this term in library code, "
                    "which the reader does not read"
                )
            continue
        others = {id(f.node) for other, t in terms.items() if other != name for s in t.stacks for f in s}
        common = set.intersection(*({id(f.node) for f in s} for s in term.stacks))
        own = [
            (i, f) for s in term.stacks for i, f in enumerate(s) if id(f.node) in common and id(f.node) not in others
        ]
        if not own:
            at = next(iter(term.kinds.values()), "")
            if common:
                why = f"{_qual(term.stacks[0][-1])} computes this term and another"
            else:
                roots = ", ".join(dict.fromkeys(_qual(s[0]) for s in term.stacks))
                why = f"its loss calls are reached from different code ({roots}), none of it the term's alone"
            unplaced[name] = f"{at}: {why}, so no function of its own marks it"
            continue
        depth, fn = max(own, key=lambda x: x[0])
        stack = next(s for s in term.stacks if fn in s)
        caller = stack[stack.index(fn) - 1] if stack.index(fn) > 0 else None
        sites.append(_site("term", fn, caller, program, term=name))
    return sites, unplaced


def _reads_map(fn: ast.FunctionDef) -> bool:
    """Its first parameter is read as a [B, C, H, W] map: `a, b, h, w = x.shape`, `x.shape[-2:]`,
    `x.shape[2]`, `x.dim() != 4`."""
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if not params:
        return False
    p = params[0]

    def is_shape(node: ast.AST) -> bool:
        if isinstance(node, ast.Call):  # x.size()
            node = node.func
        return isinstance(node, ast.Attribute) and node.attr in ("shape", "size") and _named(node.value, p)

    for n in ast.walk(fn):
        if isinstance(n, ast.Assign) and is_shape(n.value):
            if any(isinstance(t, ast.Tuple) and len(t.elts) == 4 for t in n.targets):
                return True
        if isinstance(n, ast.Subscript) and is_shape(n.value):
            index = ast.unparse(n.slice)
            if index in ("-2:", "2", "3", "-1", "-2", "2:"):
                return True
        if isinstance(n, ast.Compare) and isinstance(n.left, ast.Call) and isinstance(n.left.func, ast.Attribute):
            if n.left.func.attr in ("dim", "ndim") and _named(n.left.func.value, p):
                return any(isinstance(c, ast.Constant) and c.value == 4 for c in n.comparators)
    return False


def _held_library(program: Program, fn: Defn, attr: str) -> tuple[str, str] | None:
    """(dotted class, file:line) of a library module the method's class builds as `self.<attr>`."""
    cls = _owner(fn)
    init = program.method(Defn(fn.file, cls), "__init__") if cls is not None else None
    for n in ast.walk(init.node) if init else ():
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call):
            if any(isinstance(t, ast.Attribute) and t.attr == attr for t in n.targets):
                sym = program.resolve(init.file, n.value.func)
                if isinstance(sym, External):
                    return sym.dotted, init.file.at(n)
    return None


def _named(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def roi_site(box: Defn, program: Program) -> dict | str:
    """The RoIAlign-like call in the box-feature method `box` (a site), or why there is none."""
    for n in ast.walk(box.node):
        if not isinstance(n, ast.Call):
            continue
        func = n.func
        if isinstance(func, ast.Attribute) and _named(func.value, "self"):
            built = _held_library(program, box, func.attr)
            if built is not None and built[0].startswith("torchvision") and last(built[0]) in ROI_MODULES:
                return {"what": "roi", "kind": "attribute", "name": func.attr, "module": built[0], "at": built[1]}
            continue
        sym = program.resolve(box.file, func)
        if isinstance(sym, External) and last(sym.dotted) in ROI_FUNCTIONS and sym.dotted.startswith("torchvision"):
            if not isinstance(func, ast.Name):
                return (
                    f"{box.file.at(n)}: {call_name(n)} is called through the library's module: "
                    "replacing it there would change it for every caller, so it is not hooked"
                )
            site = {"what": "roi", "kind": "function", "module": sym.dotted.rpartition(".")[0]}
            site.update(qualname=last(sym.dotted), caller=box.file.module, name=func.id, at=box.file.at(n))
            return site
        if isinstance(sym, Defn) and isinstance(sym.node, ast.FunctionDef) and _owner(sym) is None:
            if _reads_map(sym.node) and len(n.args) >= 2:
                return _site("roi", sym, box, program)
    return (
        f"{box.file.at(box.node)}: {box.node.name} calls no RoIAlign-like function (torchvision.ops or one of its own)"
    )


def _arg_source(fn: Defn, arg: ast.AST) -> ast.Call | None:
    """The `self.<method>(...)` call an argument comes from (directly, or a local assigned from it)."""
    if isinstance(arg, ast.Call):
        return arg
    if isinstance(arg, ast.Subscript):  # box_feats[hard]
        arg = arg.value
    if isinstance(arg, ast.Name):
        for n in ast.walk(fn.node):
            if (
                isinstance(n, ast.Assign)
                and any(_named(t, arg.id) for t in n.targets)
                and isinstance(n.value, ast.Call)
            ):
                return n.value
    return None


def box_feature_method(losses, program: Program, model_cls: Defn | None) -> Defn | None:
    """The model's method whose output is the region term's first (image-side) input."""
    term = (losses.terms if losses is not None else {}).get("region")
    if term is None or model_cls is None:
        return None
    for stack in term.stacks:
        for caller, callee in zip(stack, stack[1:]):
            for n in ast.walk(caller.node):
                if not (isinstance(n, ast.Call) and n.args and isinstance(n.func, ast.Attribute)):
                    continue
                if n.func.attr not in (callee.node.name, *_holders(caller, callee)):
                    continue
                source = _arg_source(caller, n.args[0])
                if (
                    source is None
                    or not isinstance(source.func, ast.Attribute)
                    or not _named(source.func.value, "self")
                ):
                    continue
                method = program.method(model_cls, source.func.attr)
                if method is not None:
                    return method
    return None


def _holders(caller: Defn, callee: Defn) -> list[str]:
    """`self.<attr>(...)` names that run `callee` (a held module's forward): attributes the
    caller's class builds from callee's class."""
    cls = _owner(callee)
    if cls is None or callee.node.name != "forward":
        return []
    return [
        t.attr
        for n in ast.walk(caller.file.tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and last(call_name(n.value)) == cls.name
        for t in n.targets
        if isinstance(t, ast.Attribute)
    ]


def probe_sites(losses, read, program: Program) -> tuple[list[dict], dict[str, str]]:
    """Every site the reading places, and {what: why} for what it could not."""
    sites, unplaced = term_sites(losses, program)
    model = read.model if read is not None else None
    model_cls = model.cls if model is not None else None
    box = box_feature_method(losses, program, model_cls)
    if box is not None:
        sites.append(_site("box_features", box, None, program))
        roi = roi_site(box, program)
        if isinstance(roi, dict):
            sites.append(roi)
        else:
            unplaced["roi"] = roi
    elif losses is not None and "region" in losses.terms:
        at = next(iter(losses.terms["region"].kinds.values()), "")
        unplaced["box_features"] = f"{at}: the region term's box features are not traced to a method of the model"
    if read is not None and read.bank is not None:
        sites.append({"what": "bank", "kind": "attribute", "name": read.bank.attr, "at": read.bank.at})
    return sites, unplaced
