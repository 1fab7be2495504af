"""Run a training the doctor did not write, in-process, for N optimizer steps with probes.

The launch is parsed exactly as check-config parses it; the training module (or script) runs
with `runpy` and the launch's own arguments. While it runs, `transformers.Trainer.__init__` is
wrapped so that, whatever the script does with its flags, the Trainer gets: `max_steps = N`,
a temporary `output_dir` (never the user's, so never resuming), no checkpoint saving (unless
`keep_run`), no reporting integrations, no tqdm, and the DoctorCallback. What the training
prints is captured (`LiveRun.output`), not shown. `Trainer.train` is
wrapped to drop `resume_from_checkpoint`. The training runs from the launch's directory (after its
script's `cd`), as bash would run it. Everything is undone on exit, also on error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import sys
import sysconfig
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from fgclip_doctor.callback import DoctorCallback
from fgclip_doctor.errors import DoctorInputError, DoctorUsageError
from fgclip_doctor.sources.launch.target import TargetView, launch_directory


@dataclass
class LiveRun:
    """What one process of a live run observed."""

    callback: DoctorCallback
    output_dir: str
    device: str
    argv: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output: str = ""  # what the training itself printed (stdout and stderr), never echoed


def launch_argv(view: TargetView, notes: list[str]) -> list[str]:
    """The training program's own arguments, rebuilt from the parsed launch."""
    argv = []
    for name, flag in view.flags.items():
        if flag.value is None:
            notes.append(f"--{name} depends on something unresolved in the launch: left out")
            continue
        if name == "deepspeed":
            try:
                import deepspeed  # noqa: F401
            except ImportError:
                notes.append("the launch asks for DeepSpeed, which is not installed here: run without it")
                continue
        value = flag.value
        argv += [f"--{name}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


@contextlib.contextmanager
def forced_trainer(callback: DoctorCallback, steps: int, output_dir: str, save: bool, device: str, progress=None):
    """Wrap Trainer.__init__ / Trainer.train for the duration of the block."""
    import transformers

    trainer_cls = transformers.Trainer
    original_init, original_train = trainer_cls.__init__, trainer_cls.train

    def __init__(self, *args, **kwargs):
        targs = kwargs.get("args", args[1] if len(args) > 1 else None)
        if targs is not None:
            targs.max_steps = steps
            targs.output_dir = output_dir
            targs.report_to = []
            targs.disable_tqdm = True
            if not save:
                targs.save_strategy = "no"
            if device == "cpu":
                targs.use_cpu = True
        original_init(self, *args, **kwargs)
        self.callback_handler.callbacks.insert(0, callback)
        if progress is not None:
            self.add_callback(progress)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        return original_train(self, None, *args, **kwargs)  # never resume in a live run

    trainer_cls.__init__, trainer_cls.train = __init__, train
    try:
        yield
    finally:
        trainer_cls.__init__, trainer_cls.train = original_init, original_train
        callback.close()


@contextlib.contextmanager
def working_directory(path: Path):
    """chdir to `path` for the block (restored after, also on error or Ctrl-C)."""
    before = os.getcwd()
    try:
        os.chdir(path)
    except OSError as err:
        raise DoctorInputError(path, f"the launch runs here, and it cannot be entered: {err.strerror or err}") from None
    try:
        yield
    finally:
        os.chdir(before)


def last_line(text: str) -> str:
    """The last non-empty line the training printed (its own error message, usually)."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def training_error(err: BaseException, device: str) -> str:
    """`the training raised ValueError: ... (at file.py:12)`, the innermost frame, plus a hint for bf16 on a CPU."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    libraries = ("site-packages", "dist-packages", sysconfig.get_paths()["stdlib"], str(Path(__file__).parents[1]))
    own = [f for f in frames if not f.filename.startswith("<") and not any(p in f.filename for p in libraries)]
    frame = (own or frames or [None])[-1]
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    text = " ".join(str(err).split()) or "no message"
    hint = ""
    if device == "cpu" and "bf16" in text:
        hint = "; live runs on the CPU here: --device cuda on a GPU machine, or --use_cpu True in the launch"
    return f"the training raised {type(err).__name__}: {text}{where}{hint}"


def run_training(
    view: TargetView,
    steps: int,
    device: str = "auto",
    keep_run: Path | None = None,
    interval: int = 5,
    rank: int = 0,
    progress=None,
    settings=None,
    base_facts=None,
    log: Path | None = None,
) -> LiveRun:
    """Run the launch's training for `steps` optimizer steps under the probes; what it prints
    goes to `log` (also when it fails), not to the terminal."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DoctorUsageError("--device cuda: no CUDA device is available here")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    here = launch_directory(view)
    if here is None:
        raise DoctorInputError(view.origin(), f"live cannot run it from the folder it expects: {view.directory_source}")
    notes: list[str] = []
    argv = launch_argv(view, notes)
    callback = DoctorCallback(interval=interval, rank=rank, settings=settings, base_facts=base_facts)
    if progress is not None:
        progress.watch(callback.history)
    tmp = None
    if keep_run is not None:
        out = str(Path(keep_run).absolute())  # the doctor's folder, not the launch's
    else:
        tmp = tempfile.TemporaryDirectory(prefix="fgclip-doctor-live-")
        out = tmp.name
    if view.is_subject:  # the subject parses these; for other code the Trainer wrap forces them
        argv += ["--max_steps", str(steps), "--output_dir", out, "--report_to", "none"]
        if device == "cpu":  # before TrainingArguments validates: a --bf16 launch is refused on a CPU without it
            argv += ["--use_cpu", "True"]
    entry = view.entry or ""
    captured = io.StringIO()
    saved_argv = sys.argv
    sys.argv = [entry] + argv
    try:
        # The training's own prints (Trainer's log dicts, tqdm bars) are kept, not shown: stdout
        # carries the report (JSON / JUnit); `live --log FILE` writes them out.
        with (
            working_directory(here),
            forced_trainer(callback, steps, out, keep_run is not None, device, progress),
            contextlib.redirect_stdout(captured),
            contextlib.redirect_stderr(captured),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message=".*found in sys.modules.*", category=RuntimeWarning)
            try:
                # sys.path[0] as `python script.py` (the script's folder) / `python -m` (the cwd) sets it
                script = entry.endswith(".py")
                if script and not Path(entry).is_file():
                    raise DoctorInputError(entry, f"training script not found in {here} (the launch's directory)")
                sys.path.insert(0, str(Path(entry).resolve().parent if script else here))
                try:
                    if script:
                        runpy.run_path(entry, run_name="__main__")
                    else:
                        runpy.run_module(entry, run_name="__main__", alter_sys=True)
                finally:
                    sys.path.pop(0)
            except SystemExit as err:
                if err.code not in (None, 0):
                    said = last_line(captured.getvalue())
                    raise DoctorInputError(
                        view.origin(), f"the training exited with {err.code!r}" + (f": {said}" if said else "")
                    ) from None
            except ImportError as err:
                raise DoctorInputError(view.origin(), f"cannot import the training code: {err}") from None
            except (DoctorInputError, DoctorUsageError):
                raise
            # the boundary with the user's own training code, which may raise anything: its crash
            # becomes one line naming where (--debug: the traceback); the doctor's own errors are above
            except Exception as err:
                raise DoctorInputError(view.origin(), training_error(err, device)) from err
    finally:
        sys.argv = saved_argv
        if log is not None:
            try:
                log.write_text(captured.getvalue(), encoding="utf-8")
            except OSError as err:
                raise DoctorUsageError(f"--log {log}: cannot write: {err.strerror or err}") from None
        if tmp is not None:
            tmp.cleanup()
    if not callback.history:
        raise DoctorInputError(view.origin(), "the training never reached a Trainer step: nothing was measured")
    return LiveRun(callback, out, device, argv, notes, captured.getvalue())
