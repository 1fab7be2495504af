"""Where the world size a loss uses comes from (losses.py's terms): a flag (`self.world_size =
args.world_size`), torch.distributed (`get_world_size()`, or a gather of every rank), a constant."""

from __future__ import annotations

import ast

from fgclip_doctor.sources.code.reader.astutil import call_name, last
from fgclip_doctor.sources.code.reader.source import SourceFile


def world_size(reading, files: list[SourceFile]) -> None:
    """Where the world size the loss uses comes from: a flag, torch.distributed, a constant."""
    if not reading.terms:
        return
    if any(t.world_size_attr for t in reading.terms.values()):
        for f in files:
            for n in ast.walk(f.tree):
                if isinstance(n, ast.Assign) and any(
                    isinstance(t, ast.Attribute) and t.attr == "world_size" for t in n.targets
                ):
                    v = n.value
                    if (
                        isinstance(v, ast.Attribute)
                        and isinstance(v.value, ast.Name)
                        and v.value.id.endswith("args")
                        and v.attr != "world_size"
                    ):
                        reading.world_size_from, reading.world_size_at = f"flag {v.attr}", f.at(n)
                        return
                    if any(isinstance(c, ast.Call) and last(call_name(c)) == "get_world_size" for c in ast.walk(v)):
                        reading.world_size_from, reading.world_size_at = "torch.distributed", f.at(n)
        return
    gathered = [t.gathered[True] for t in reading.terms.values() if True in t.gathered]
    if gathered:
        reading.world_size_from, reading.world_size_at = "torch.distributed", gathered[0]
