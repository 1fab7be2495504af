"""Thin typer commands: wire a source to the checks and the report; nothing imports this module.

Every reporting command takes the common options below (`FormatOpt`, `OutputOpt`, ...) and hands
a `build(settings) -> Report` function to `run_report`, which owns settings, output, exit codes
and the one place where domain errors become `fgclip-doctor: error: <path>: <problem>` + exit 2.
"""
from __future__ import annotations

import sys
import traceback
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, NoReturn, Optional

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fgclip_doctor import __version__
from fgclip_doctor.checks.registry import Rule, all_rules, get_rule
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.report import Report, emit
from fgclip_doctor.settings import Settings, load_settings

class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad value) as the one line every error gets, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        # Inputs can hold lone surrogates (JSON "\ud800" escapes): print them escaped, never crash.
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(errors="backslashreplace")
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("fgclip-doctor: aborted", err=True)
            sys.exit(130)
        except typer.TyperException as err:  # click's usage errors (typer vendors click)
            ctx = getattr(err, "ctx", None)
            if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())
                sys.exit(2)
            message = err.format_message() if hasattr(err, "format_message") else str(err)
            hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.echo(f"fgclip-doctor: error: {message}{hint}", err=True)
            sys.exit(getattr(err, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

#: Errors that mean bad usage or unusable input: one line on stderr, exit 2.
HANDLED_ERRORS = (DoctorInputError, DoctorUsageError, OSError)


class Format(str, Enum):
    """Output formats."""

    table = "table"
    json = "json"
    junit = "junit"


FormatOpt = Annotated[Optional[Format], typer.Option(
    "--format", "-f", help="Output format (default: table, or `format` in pyproject).")]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", dir_okay=False, help="Write the report to FILE instead of stdout.")]
StrictOpt = Annotated[Optional[bool], typer.Option(
    "--strict/--no-strict", help="Warnings fail too (exit 1).", show_default=False)]
SelectOpt = Annotated[Optional[list[str]], typer.Option(
    "--select", help="Only these rules (slug, code or code prefix; repeatable or a,b).")]
IgnoreOpt = Annotated[Optional[list[str]], typer.Option(
    "--ignore", help="Skip these rules (slug, code or code prefix; repeatable or a,b).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


@dataclass
class CommonOptions:
    """The common options of a reporting command, as typer parsed them."""

    format: Optional[Format] = None
    output: Optional[Path] = None
    strict: Optional[bool] = None
    select: Optional[list[str]] = None
    ignore: Optional[list[str]] = None
    debug: bool = False
    expect: list[str] = field(default_factory=list)

    def cli_values(self) -> dict[str, object]:
        """The values that override file settings (None / empty = not given)."""
        return {"format": self.format.value if self.format else None, "strict": self.strict,
                "select": split_list(self.select), "ignore": split_list(self.ignore),
                "expect": list(self.expect)}


def split_list(values: Optional[list[str]]) -> list[str]:
    """["a,b", "c"] -> ["a", "b", "c"] (repeatable and comma-separated options)."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def fail(err: BaseException, debug: bool = False) -> NoReturn:
    """Report a handled error as one line on stderr (traceback first with --debug); exit 2."""
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    typer.echo(f"fgclip-doctor: error: {_one_line(err)}", err=True)
    raise typer.Exit(2)


def _stdout_console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120, soft_wrap=False)


def _check_output(target: Optional[str], output: Optional[Path]) -> None:
    """The doctor never writes into what it inspects."""
    if output is None or not target or not Path(target).exists():
        return
    inspected, out = Path(target).resolve(), output.resolve()
    if out == inspected or inspected in out.parents:
        raise DoctorUsageError(f"{output}: --output would write into the inspected {target}")


def run_report(command: str, target: Optional[str], build: Callable[[Settings], Report],
               opts: CommonOptions) -> NoReturn:
    """Load settings (pyproject nearest the cwd), apply CLI options, build, emit, exit.

    Exit 0 (no failure), 1 (a FAIL, or a WARN with --strict), 2 (bad usage / unreadable input:
    DoctorInputError, DoctorUsageError, OSError -> one line on stderr).
    """
    try:
        settings, _origin = load_settings(Path.cwd())
        settings = settings.merge(opts.cli_values())
        _check_output(target, opts.output)
        report = build(settings)
        report.strict = settings.strict
        code = emit(report, settings.format or "table", opts.output, _stdout_console())
    except HANDLED_ERRORS as err:
        fail(err, opts.debug)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fgclip-doctor {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """A training-health doctor for FG-CLIP and CLIP-style contrastive training."""


def _rules_table(rules: list[Rule]) -> Table:
    table = Table(header_style="bold")
    for name in ("code", "rule", "where", "severity", "checks"):
        table.add_column(name, no_wrap=name != "checks")
    for r in rules:
        table.add_row(r.code, r.name, " ".join(r.where), r.severity, r.title)
    return table


_WHERE = {"C": "config", "K": "checkpoint", "L": "live run", "D": "data"}


def _explain(r: Rule, console: Console) -> None:
    where = ", ".join(_WHERE[c] for c in r.where)
    console.print(Text(f"{r.code} {r.name}", style="bold"),
                  Text(f"({r.severity} · where: {where})", style="dim"))
    console.print(Text(r.title))
    for heading, body in (("What it does", r.what), ("Why it matters", r.why),
                          ("Example", r.example), ("Evidence", r.evidence), ("Fix", r.fix)):
        console.print()
        console.print(Text(heading, style="bold underline"))
        console.print(Text("\n".join("  " + line for line in body.strip().splitlines())))
    console.print()
    console.print(Text("Default thresholds", style="bold underline"))
    if r.thresholds:
        for key, value in sorted(r.thresholds.items()):
            console.print(Text(f"  {key} = {value:g}"))
    else:
        console.print(Text("  (none)"))
    console.print(Text(f"\nOverride in pyproject.toml: [tool.fgclip-doctor.thresholds.{r.name}]",
                       style="dim"))


@app.command("rules")
def rules_command(
    name: Annotated[Optional[str], typer.Argument(help="A rule slug or code to explain.")] = None,
    debug: DebugOpt = False,
) -> None:
    """List every rule, or explain one (what it does, why it matters, example, evidence, fix)."""
    console = _stdout_console()
    try:
        if name is None:
            rules = all_rules()
            if rules:
                console.print(_rules_table(rules))
            else:
                console.print("(no rules registered)")
        else:
            _explain(get_rule(name), console)
    except HANDLED_ERRORS as err:
        fail(err, debug)


@app.command("check-config")
def check_config_command(
    target: Annotated[Optional[Path], typer.Argument(
        help="Launch script (.sh) or args file (.json/.yaml); none = the bundled default run.")] = None,
    dataset_size: Annotated[Optional[int], typer.Option(
        "--dataset-size", min=1, help="Training records, when the annotations are not readable here.")] = None,
    format: FormatOpt = None, output: OutputOpt = None, strict: StrictOpt = None,
    select: SelectOpt = None, ignore: IgnoreOpt = None, debug: DebugOpt = False,
) -> None:
    """Check a launch before it runs: scales, warmups in both step units, negatives, resume, precision."""
    from fgclip_doctor.check_config import build_report

    run_report("check-config", str(target) if target else None,
               lambda settings: build_report(target, settings, dataset_size),
               CommonOptions(format, output, strict, select, ignore, debug))


class Device(str, Enum):
    """Where a live run trains."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command("live")
def live_command(
    target: Annotated[Optional[Path], typer.Argument(
        help="Launch script (.sh) or args file; none = the bundled default run.")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps to run.")] = 60,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A subject preset: tiny | seed-bug.")] = None,
    device: Annotated[Device, typer.Option("--device", help="auto picks CUDA when present.")] = Device.auto,
    keep_run: Annotated[Optional[Path], typer.Option("--keep-run", help="Keep the run (and checkpoints) in DIR.")] = None,
    interval: Annotated[int, typer.Option("--interval", min=1, help="Read probes back every N steps.")] = 5,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Processes (torchrun; gloo on the CPU).")] = 1,
    expect: Annotated[Optional[list[str]], typer.Option(
        "--expect", help="Loss milestone, e.g. region_loss@50<1.0 (repeatable).")] = None,
    format: FormatOpt = None, output: OutputOpt = None, strict: StrictOpt = None,
    select: SelectOpt = None, ignore: IgnoreOpt = None, debug: DebugOpt = False,
) -> None:
    """A short real run with probes: what each loss sees, the bank, gradients; pass/fail table."""
    from fgclip_doctor.live.command import build_report

    run_report("live", str(target) if target else None,
               lambda settings: build_report(target, preset, steps, device.value, keep_run, interval, settings, nproc),
               CommonOptions(format, output, strict, select, ignore, debug, expect=list(expect or [])))


@app.command("inspect-ckpt")
def inspect_ckpt_command(
    paths: Annotated[list[Path], typer.Argument(
        help="Checkpoint folder(s), a run folder with checkpoint-*, or a weights file "
             "(.safetensors, .bin, .pt).", show_default=False)],
    expect: Annotated[Optional[list[str]], typer.Option(
        "--expect", help="Loss milestone KEY@STEP<VALUE, e.g. region_loss@500<0.5 (repeatable).")] = None,
    scan: Annotated[bool, typer.Option("--scan", help="Scan every tensor for NaN/Inf (streamed).")] = False,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", dir_okay=False, help="Write the loss curves against their chance lines to FILE.png "
                                       "(needs matplotlib).")] = None,
    format: FormatOpt = None, output: OutputOpt = None, strict: StrictOpt = None,
    select: SelectOpt = None, ignore: IgnoreOpt = None, debug: DebugOpt = False,
) -> None:
    """Verdicts from checkpoints without loading them: scales, bank, losses vs chance, NaN, LR state."""
    from fgclip_doctor.inspect_ckpt import build_report

    run_report("inspect-ckpt", str(paths[0]) if len(paths) == 1 else None,
               lambda settings: build_report(paths, settings, scan, plot, output),
               CommonOptions(format, output, strict, select, ignore, debug, list(expect or [])))


@app.command("check-data")
def check_data_command(
    data: Annotated[Path, typer.Argument(help="FG-CLIP annotations: .jsonl, .json list, or a folder of them.")],
    image_root: Annotated[Optional[Path], typer.Option(
        "--image-root", file_okay=False, help="Folder f_path is relative to: check each image exists.")] = None,
    check_images: Annotated[bool, typer.Option("--check-images", help="Also open each image (PIL) and report sizes.")] = False,
    grid: Annotated[int, typer.Option("--grid", min=1, help="Patch grid side for box-tiny (14 = ViT-B/16 at 224).")] = 14,
    max_boxes: Annotated[int, typer.Option("--max-boxes", min=1, help="Boxes per image the loader keeps.")] = 4,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=1, help="Processes (default: all cores).")] = None,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Examples (file:line) kept per category.")] = 5,
    write_clean: Annotated[Optional[Path], typer.Option(
        "--write-clean", dir_okay=False, help="Write valid records with only valid boxes to this .jsonl (never in place).")] = None,
    format: FormatOpt = None, output: OutputOpt = None, strict: StrictOpt = None,
    select: SelectOpt = None, ignore: IgnoreOpt = None, debug: DebugOpt = False,
) -> None:
    """Check annotations at dataset scale: box validity, tiny boxes, records, hard negatives, images."""
    from fgclip_doctor.check_data import build_report

    run_report("check-data", str(data), lambda settings: build_report(
        data, settings, image_root, check_images, grid, workers, max_boxes, examples, write_clean=write_clean),
        CommonOptions(format, output, strict, select, ignore, debug))
