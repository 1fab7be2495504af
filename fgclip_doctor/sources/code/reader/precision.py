"""Does the training code refuse fp16?

FG-CLIP's train script stops on fp16 before training (`assert training_args.fp16 == False`; the
bundled subject raises SystemExit): its contrastive losses go NaN in fp16. Shapes read:
`assert X.fp16 == False`, `assert X.fp16 is False`, `assert not X.fp16`, and
`if X.fp16: raise ...` anywhere in the code read. fp16 (FGD601) FAILs on such code and only
WARNs on code that does not say.
"""

from __future__ import annotations

import ast

from fgclip_doctor.sources.code.reader.source import SourceFile


def _is_fp16(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "fp16"


def _says_not_fp16(test: ast.expr) -> bool:
    """`X.fp16 == False`, `X.fp16 is False`, `not X.fp16`."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _is_fp16(test.operand)
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and _is_fp16(test.left):
        right = test.comparators[0]
        false = isinstance(right, ast.Constant) and right.value is False
        return false and isinstance(test.ops[0], (ast.Eq, ast.Is))
    return False


def _raises(body: list[ast.stmt]) -> bool:
    return any(isinstance(n, ast.Raise) for stmt in body for n in ast.walk(stmt))


def find_fp16_refusal(files: list[SourceFile]) -> str | None:
    """`file:line` of the first statement that stops an fp16 run, or None."""
    for f in files:
        for node in ast.walk(f.tree):
            if isinstance(node, ast.Assert) and _says_not_fp16(node.test):
                return f.at(node)
            if isinstance(node, ast.If) and _is_fp16(node.test) and _raises(node.body):
                return f.at(node)
    return None
