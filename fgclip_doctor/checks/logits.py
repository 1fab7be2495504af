"""Temperature rules (FGD1xx), live: the precision of the logits the scales multiply (FGD105).

At scale 100 the logits span about [-100, 100]; bfloat16 keeps 8 significant bits there, so
logits closer than half a unit round together before cross-entropy sees them.
"""

from __future__ import annotations

import math

from fgclip_doctor.checks.observed import observed_terms
from fgclip_doctor.checks.registry import Finding, RuleContext, rule
from fgclip_doctor.facts import Facts
from fgclip_doctor.vocabulary import observed_fact

#: explicit mantissa bits of the low-precision float formats (bfloat16: 7 + the implicit one = 8)
MANTISSA_BITS = {"bfloat16": 7, "float16": 10}
FULL_PRECISION = ("float32", "float64")
_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "half": "float16",
    "fp16": "float16",
    "float": "float32",
    "fp32": "float32",
    "double": "float64",
    "fp64": "float64",
}


def dtype_name(value: object) -> str:
    """'torch.bfloat16' / 'bf16' / torch.bfloat16 -> 'bfloat16'."""
    text = str(value).strip().lower()
    text = text[len("torch.") :] if text.startswith("torch.") else text
    return _DTYPE_ALIASES.get(text, text)


def float_step(dtype: str, magnitude: float) -> float:
    """Spacing of representable `dtype` values at `magnitude` (bfloat16 at 100: 0.5)."""
    exponent = math.floor(math.log2(magnitude)) if magnitude > 0 else 0
    return 2.0 ** (exponent - MANTISSA_BITS[dtype])


@rule(
    "FGD105",
    "bf16-logits",
    title="logits reach cross-entropy in float32 at large scales",
    severity="warn",
    where="L",
    fix="compute the logits and the loss in float32 (features .float() before the matmul with "
    "exp(logit_scale), or autocast disabled around the loss)",
    what="For each cross-entropy the live probe saw, the dtype of its logits: bfloat16 or "
    "float16 logits at a scale (exp(logit_scale), or else the largest |logit|) of 50 or "
    "more warn; float32 passes.",
    why="bfloat16 keeps 8 significant bits: near 100 its step is 0.5 (near 50 it is 0.25), so "
    "a positive and a hard negative whose logits differ by less than that tie, and the "
    "gradient that should separate them is rounded away. At T 100 a cosine gap of 0.005 "
    "is already a logit gap of 0.5.",
    example="region logits torch.bfloat16 at scale 100 (max |logit| 31) -> WARN: step 0.5 near "
    "100; torch.float32 -> PASS",
    evidence="torch.finfo(torch.bfloat16).eps = 2^-7 (8 significant bits), so "
    "torch.tensor(100.2, dtype=torch.bfloat16) == 100; PyTorch's autocast runs matmul "
    "in the low-precision dtype and only casts cross_entropy's input up, after the "
    "logits were rounded; models cast wholly to bf16 (DeepSpeed bf16) keep the loss in "
    "bf16 too. The scale sits at T 100 in a trained CLIP (open_clip clamps at ln 100).",
    thresholds={"min_scale": 50.0},
)
def bf16_logits(facts: Facts, ctx: RuleContext) -> list[Finding]:
    """One finding per observed term."""
    terms = observed_terms(facts, "logits", ("dtype", "scale", "max_abs"))
    if not terms:
        return [
            ctx.skip(
                "not known: observed.terms / observed.logits.<term>.dtype (a live run "
                "records the logits each cross-entropy gets)"
            )
        ]
    return [_bf16_term(facts, ctx, term) for term in terms]


def _bf16_term(facts: Facts, ctx: RuleContext, term: str) -> Finding:
    names = [observed_fact("logits", term, k) for k in ("dtype", "scale", "max_abs")]
    src = ctx.sources_of(facts, *names)
    raw = facts.value(names[0])
    if raw is None:
        return ctx.skip(f"not known: {names[0]}", src, term)
    dtype = dtype_name(raw)
    scale, max_abs = facts.value(names[1]), facts.value(names[2])
    known = [float(v) for v in (scale, max_abs) if v is not None]
    size = ", ".join(
        ([f"scale {float(scale):.3g}"] if scale is not None else [])
        + ([f"max |logit| {float(max_abs):.3g}"] if max_abs is not None else [])
    )
    size = f" ({size})" if size else ""
    limit = ctx.threshold("min_scale")
    expected = f"float32 at scale >= {limit:g}"
    if dtype in FULL_PRECISION:
        return ctx.passed(dtype, expected, f"{term}: logits in {dtype}{size}", src, term)
    if dtype not in MANTISSA_BITS:
        return ctx.skip(f"{term}: logits dtype {raw} not recognised", src, term)
    if not known:
        return ctx.skip(f"{term}: logits in {dtype}, but their size is not known: {names[1]}, {names[2]}", src, term)
    magnitude = max(known)
    step = float_step(dtype, magnitude)
    measured = f"{dtype}{size}"
    if magnitude >= limit:
        return ctx.problem(
            measured,
            expected,
            f"{term}: logits in {dtype}{size}: {dtype} keeps "
            f"{MANTISSA_BITS[dtype] + 1} significant bits, so near "
            f"{magnitude:.3g} its step is {step:g} and logits closer than that "
            f"tie",
            src,
            term,
        )
    return ctx.passed(
        measured, expected, f"{term}: logits in {dtype}{size}, below {limit:g} (step {step:g} there)", src, term
    )
