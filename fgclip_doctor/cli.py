"""Thin typer commands: wire a source to the checks and the report; nothing imports this module.

Every reporting command takes the common options below (`FormatOpt`, `OutputOpt`, ...) and hands
a `build(settings) -> Report` function to `run_report`, which owns settings, output, exit codes
and the one place where domain errors become `fgclip-doctor: error: <path>: <problem>` + exit 2.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from fgclip_doctor import __version__
from fgclip_doctor.checks.registry import all_rules, get_rule
from fgclip_doctor.commands.rules import explain_rule, print_rules
from fgclip_doctor.environment import require_trainer
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError, one_line
from fgclip_doctor.report import Report, emit, refuse_output_into
from fgclip_doctor.settings import Settings, load_settings
from fgclip_doctor.terminal import make_console


class OneLineErrors(TyperGroup):
    """Usage errors (unknown option, bad value) as the one line every error gets, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
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


FormatOpt = Annotated[
    Optional[Format], typer.Option("--format", "-f", help="Output format (default: table, or `format` in pyproject).")
]
OutputOpt = Annotated[
    Optional[Path], typer.Option("--output", "-o", dir_okay=False, help="Write the report to FILE instead of stdout.")
]
StrictOpt = Annotated[
    Optional[bool], typer.Option("--strict/--no-strict", help="Warnings fail too (exit 1).", show_default=False)
]
SelectOpt = Annotated[
    Optional[list[str]],
    typer.Option("--select", help="Only these rules (slug, code or code prefix; repeatable or a,b)."),
]
IgnoreOpt = Annotated[
    Optional[list[str]],
    typer.Option("--ignore", help="Skip these rules (slug, code or code prefix; repeatable or a,b)."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Table: passes and skips as a count only.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Table: passes and skips in full too.")]


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
    quiet: bool = False
    verbose: bool = False

    def verbosity(self) -> int:
        """-1 with -q, 1 with -v, else 0 (both given: a usage error)."""
        if self.quiet and self.verbose:
            raise DoctorUsageError("--quiet and --verbose together: choose one")
        return -1 if self.quiet else 1 if self.verbose else 0

    def cli_values(self) -> dict[str, object]:
        """The values that override file settings (None / empty = not given)."""
        return {
            "format": self.format.value if self.format else None,
            "strict": self.strict,
            "select": split_list(self.select),
            "ignore": split_list(self.ignore),
            "expect": list(self.expect),
        }


def split_list(values: Optional[list[str]]) -> list[str]:
    """["a,b", "c"] -> ["a", "b", "c"] (repeatable and comma-separated options)."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def fail(err: BaseException, debug: bool = False) -> NoReturn:
    """Report a handled error as one line on stderr (traceback first with --debug); exit 2."""
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    typer.echo(f"fgclip-doctor: error: {one_line(err)}", err=True)
    raise typer.Exit(2)


def _stdout_console() -> Console:
    return make_console(sys.stdout)


def run_report(
    command: str, target: Optional[str], build: Callable[[Settings], Report], opts: CommonOptions
) -> NoReturn:
    """Load settings (pyproject nearest the cwd), apply CLI options, build, emit, exit.

    Exit 0 (no failure), 1 (a FAIL, or a WARN with --strict), 2 (bad usage / unreadable input:
    DoctorInputError, DoctorUsageError, OSError -> one line on stderr).
    """
    try:
        verbosity = opts.verbosity()
        settings, _origin = load_settings(Path.cwd())
        settings = settings.merge(opts.cli_values())
        refuse_output_into(target, opts.output)
        report = build(settings)
        report.strict = settings.strict
        code = emit(report, settings.format or "table", opts.output, _stdout_console(), verbosity)
    except HANDLED_ERRORS as err:
        fail(err, opts.debug)
    except KeyboardInterrupt:  # Ctrl-C: cleaned up on the way here; one line `aborted`, exit 130
        raise typer.Abort() from None
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fgclip-doctor {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """A training-health doctor for FG-CLIP and CLIP-style contrastive training."""
    from fgclip_doctor.bundled import pin_subject

    try:  # before anything imports `fgclip`: FG-CLIP's own package of that name may be on sys.path
        pin_subject()
    except DoctorInputError as err:
        fail(err)


@app.command("rules")
def rules_command(
    name: Annotated[Optional[str], typer.Argument(help="A rule slug or code to explain.")] = None,
    debug: DebugOpt = False,
) -> None:
    """List every rule, or explain one (what it does, why it matters, example, evidence, fix)."""
    console = _stdout_console()
    try:
        if name is None:
            print_rules(all_rules(), console)
        else:
            explain_rule(get_rule(name), console)
    except HANDLED_ERRORS as err:
        fail(err, debug)


ModuleOpt = Annotated[
    Optional[str], typer.Option("--module", "-m", help="Training module, as `python -m MODULE -- ARGS` runs it.")
]
TrainingArgs = Annotated[Optional[list[str]], typer.Argument(help="After `--`: the training's own arguments.")]


@app.command("check-config")
def check_config_command(
    target: Annotated[
        Optional[Path],
        typer.Argument(
            help="Launch script (.sh), args file (.json/.yaml) or training script (.py); none = the default run."
        ),
    ] = None,
    training_args: TrainingArgs = None,
    module: ModuleOpt = None,
    dataset_size: Annotated[
        Optional[int],
        typer.Option("--dataset-size", min=1, help="Training records, when the annotations are not readable here."),
    ] = None,
    format: FormatOpt = None,
    output: OutputOpt = None,
    strict: StrictOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check a launch before it runs: scales, warmups in both step units, negatives, resume, precision."""
    from fgclip_doctor.commands.check_config import build_report

    def build(settings: Settings) -> Report:
        from fgclip_doctor.sources.launch.target import program_target

        return build_report(target, settings, dataset_size, program_target(target, module, training_args))

    run_report(
        "check-config",
        str(target) if target else None,
        build,
        CommonOptions(format, output, strict, select, ignore, debug, quiet=quiet, verbose=verbose),
    )


class Device(str, Enum):
    """Where a live run trains."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@app.command("live")
def live_command(
    target: Annotated[
        Optional[Path],
        typer.Argument(help="Launch script (.sh), args file or training script (.py); none = the bundled default run."),
    ] = None,
    training_args: TrainingArgs = None,
    module: ModuleOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Optimizer steps to run.")] = 60,
    preset: Annotated[Optional[str], typer.Option("--preset", help="A subject preset: tiny | seed-bug.")] = None,
    device: Annotated[Device, typer.Option("--device", help="auto picks CUDA when present.")] = Device.auto,
    keep_run: Annotated[
        Optional[Path], typer.Option("--keep-run", help="Keep the run (and checkpoints) in DIR.")
    ] = None,
    interval: Annotated[int, typer.Option("--interval", min=1, help="Read probes back every N steps.")] = 5,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Processes (torchrun; gloo on the CPU).")] = 1,
    expect: Annotated[
        Optional[list[str]], typer.Option("--expect", help="Loss milestone, e.g. region_loss@50<1.0 (repeatable).")
    ] = None,
    log: Annotated[
        Optional[Path], typer.Option("--log", help="Write what the training prints (its log lines) to FILE.")
    ] = None,
    python: Annotated[
        Optional[str],
        typer.Option("--python", help="Run the training with this interpreter (another venv), in a child process."),
    ] = None,
    format: FormatOpt = None,
    output: OutputOpt = None,
    strict: StrictOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """A short real run with probes: what each loss sees, the bank, gradients; pass/fail table."""

    def build(settings: Settings) -> Report:
        require_trainer("live")  # before the import: the live command imports transformers
        from fgclip_doctor.commands.live.command import build_report
        from fgclip_doctor.sources.launch.target import live_target

        view = live_target(target, module, training_args)
        return build_report(
            view or target, preset, steps, device.value, keep_run, interval, settings, nproc, log, python
        )

    run_report(
        "live",
        str(target) if target else None,
        build,
        CommonOptions(
            format, output, strict, select, ignore, debug, expect=list(expect or []), quiet=quiet, verbose=verbose
        ),
    )


@app.command("inspect-ckpt")
def inspect_ckpt_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoint folder(s), a run folder with checkpoint-*, or a weights file (.safetensors, .bin, .pt).",
            show_default=False,
        ),
    ],
    expect: Annotated[
        Optional[list[str]],
        typer.Option("--expect", help="Loss milestone KEY@STEP<VALUE, e.g. region_loss@500<0.5 (repeatable)."),
    ] = None,
    scan: Annotated[bool, typer.Option("--scan", help="Scan every tensor for NaN/Inf (streamed).")] = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            dir_okay=False,
            help="Write the loss curves against their chance lines to FILE.png (needs matplotlib).",
        ),
    ] = None,
    format: FormatOpt = None,
    output: OutputOpt = None,
    strict: StrictOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Verdicts from checkpoints without loading them: scales, bank, losses vs chance, NaN, LR state."""
    from fgclip_doctor.commands.inspect_ckpt import build_report

    run_report(
        "inspect-ckpt",
        str(paths[0]) if len(paths) == 1 else None,
        lambda settings: build_report(paths, settings, scan, plot, output),
        CommonOptions(format, output, strict, select, ignore, debug, list(expect or []), quiet=quiet, verbose=verbose),
    )


@app.command("check-data")
def check_data_command(
    data: Annotated[Path, typer.Argument(help="FG-CLIP annotations: .jsonl, .json list, or a folder of them.")],
    image_root: Annotated[
        Optional[Path],
        typer.Option("--image-root", file_okay=False, help="Folder f_path is relative to: check each image exists."),
    ] = None,
    check_images: Annotated[
        bool, typer.Option("--check-images", help="Also open each image (PIL) and report sizes.")
    ] = False,
    grid: Annotated[
        int, typer.Option("--grid", min=1, help="Patch grid side for box-tiny (14 = ViT-B/16 at 224).")
    ] = 14,
    max_boxes: Annotated[int, typer.Option("--max-boxes", min=1, help="Boxes per image the loader keeps.")] = 4,
    workers: Annotated[
        Optional[int], typer.Option("--workers", "-j", min=1, help="Processes (default: all cores).")
    ] = None,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Examples (file:line) kept per category.")] = 5,
    write_clean: Annotated[
        Optional[Path],
        typer.Option(
            "--write-clean",
            dir_okay=False,
            help="Write valid records with only valid boxes to this .jsonl (never in place).",
        ),
    ] = None,
    format: FormatOpt = None,
    output: OutputOpt = None,
    strict: StrictOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check annotations at dataset scale: box validity, tiny boxes, records, hard negatives, images."""
    from fgclip_doctor.commands.check_data import build_report

    run_report(
        "check-data",
        str(data),
        lambda settings: build_report(
            data, settings, image_root, check_images, grid, workers, max_boxes, examples, write_clean=write_clean
        ),
        CommonOptions(format, output, strict, select, ignore, debug, quiet=quiet, verbose=verbose),
    )
