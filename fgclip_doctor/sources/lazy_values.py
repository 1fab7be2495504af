"""Values the code reader leaves pending because only files can tell them, read here lazily:
a scale's start value that a weight load decides (the tensor from the local weights, else what
the load left in place), and the text side of the folders the code loads (EOS ids, caption
length). This layer may import both the code reader and the checkpoint reader; they stay
independent of each other.
"""

from __future__ import annotations

from fgclip_doctor.errors import DoctorInputError
from fgclip_doctor.facts import Facts
from fgclip_doctor.sources.checkpoint.layout import read_scalars
from fgclip_doctor.sources.checkpoint.text_ids import read_text_config, read_tokenizer_eos
from fgclip_doctor.sources.code.families import fact_dests
from fgclip_doctor.sources.code.reader import CodeReading
from fgclip_doctor.sources.code.reader.values import Const, Weights
from fgclip_doctor.sources.launch.target import TargetView, launch_path


def text_ids(facts: Facts, reading: CodeReading, view: TargetView, value) -> None:
    """EOS ids of the text tower and of the tokenizer the code loads, and the caption length, read
    from the loaded folders' JSON (the loads the reader followed, in the branches this launch takes);
    `value(reading, dest)` is launch_code's (value, source, known) of a flag."""
    for dest in fact_dests("text.max_seq_length"):
        got = value(reading, dest) if reading.parser.option(dest) else None
        if got is not None and got[2] and isinstance(got[0], int):
            facts.set("text.max_seq_length", got[0], got[1])
    if reading.model is None:
        return
    for dotted, path, at in reading.model.interp.loads:
        value = path.value if isinstance(path, Const) else None
        where = launch_path(view, str(value)) if isinstance(value, str) and value else None
        if where is None or not where.is_dir():
            continue
        last = dotted.rpartition(".")[0].rpartition(".")[2]
        if "Tokenizer" in last or "Processor" in last:
            if "text.tokenizer_eos_id" not in facts and (eos := read_tokenizer_eos(where)) is not None:
                facts.set("text.tokenizer_eos_id", eos[0], f"{at}: {eos[1]}")
        elif "text.eos_token_id" not in facts:
            config = read_text_config(where)
            if "eos_token_id" in config:
                facts.set("text.eos_token_id", config["eos_token_id"][0], f"{at}: {config['eos_token_id'][1]}")
            if "max_position_embeddings" in config and "text.long_positions" not in facts:
                rows, src = config["max_position_embeddings"]
                facts.set("text.long_positions", rows, f"{at}: {src}")


def weight_read(facts: Facts, fact: str, value, view: TargetView, depth: int = 0) -> None:
    """A start value a weight load decides, read lazily: the tensor from the local weights when
    they hold it, else the value the load left in place; unknown (citing the load) otherwise."""
    if isinstance(value, Const):
        if isinstance(value.value, (int, float)) and not isinstance(value.value, bool):
            facts.set(fact, float(value.value), value.at)
        return
    if not isinstance(value, Weights) or depth > 8:
        facts.mark_unknown(fact, getattr(value, "why", "not known"))
        return
    path = value.path.value if isinstance(value.path, Const) else None
    where = launch_path(view, str(path)) if isinstance(path, str) and path else None
    if where is None or not where.exists():
        shown = path if path else getattr(value.path, "why", "a path not known here")
        view.notes.append(f"{value.at}: weights loaded from {shown}: not readable here; {fact} is unknown")
        facts.mark_unknown(
            fact, f"{value.at}: weights loaded from {shown}: not readable here, so the start value is not known"
        )
        return
    try:
        scalars = read_scalars(str(where), [value.name])
    except (DoctorInputError, OSError, ValueError) as err:  # weights there, but not readable
        facts.mark_unknown(fact, f"{value.at}: weights at {path} not readable: {err}")
        return
    if value.name in scalars:
        got, src = scalars[value.name]
        facts.set(fact, float(got), f"{value.at}: {value.name} loaded from {src}")
        return
    weight_read(facts, fact, value.before, view, depth + 1)
