"""Shared fixtures. Keep them general: several test files use them.

`synthetic_root` builds the synthetic data + tiny base CLIP once per session (about a minute of
CPU for the base pretraining). Set `FGCLIP_CACHE=/some/dir` to build it there once and reuse it
across sessions (`$FGCLIP_CACHE/synthetic-v1`); otherwise it goes to a pytest tmp dir.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration
from hypothesis import settings

# Tests never reach the network (the tiny base and tokenizer are local directories).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# OpenMP threads that spin while waiting make torch 5-10x slower on a 2-core machine with anything
# else running (measured: 60 base-pretraining steps 16 s passive, 130-175 s spinning). Read when
# torch is first imported, which is after this conftest; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every hypothesis test is derandomized (the same examples on every run and machine) and keeps no
# example database: a `@settings(...)` on a test inherits both from the profile loaded here.
# HYPOTHESIS_PROFILE=fuzz-10k runs 10,000 examples per fuzz reader (tests/fuzz_cli.py). Hypothesis
# still caches the constants it mines from the source; that cache goes to the temp folder, so no
# `.hypothesis/` is written into the checkout.
settings.register_profile("derandomized", derandomize=True, database=None, deadline=None, print_blob=False)
settings.register_profile("fuzz-10k", settings.get_profile("derandomized"), max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))
hypothesis_configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "fgclip-doctor-hypothesis")

_THREADS_BEFORE: list[int] = []  # torch thread counts that `one_torch_thread` replaced, outermost first

# The reading and foreign-code tests: `-m compat` runs only these (`.ci/run` does, in a second venv
# with transformers 4.57 and no subject extra) and does not even import the other test modules,
# several of which import the subject (transformers 5) at the top. Tests in them that need the
# subject skip with the reason (the `subject` marker, or the `synthetic_root` fixture).
COMPAT_FILES = {
    "test_compat.py",
    "test_args.py",
    "test_boxes.py",
    "test_callback.py",
    "test_check_config_code.py",
    "test_check_data.py",
    "test_check_data_reader.py",
    "test_checkpoint.py",
    "test_cli_core.py",
    "test_code_reader.py",
    "test_data_formats.py",
    "test_fuzz_checkpoint.py",
    "test_fuzz_inputs.py",
    "test_launch.py",
    "test_launchers.py",
    "test_loss_levels.py",
    "test_registry.py",
    "test_report.py",
    "test_safetensors_lazy.py",
    "test_settings.py",
    "test_core_install.py",
    "test_docs.py",
    "test_first_run.py",
    "test_live_child.py",  # FG-CLIP v1 and 2 style trees run by live beside transformers 4.57 (issue 19.7)
    "test_live_fgclip2.py",
    "test_reader_train_step.py",  # accumulation / precision / no-decay read from what the code does
}
# The reading tests on the core install, neither torch nor transformers (`-m core`, .ci/run's third
# venv): files that import neither at the top; their tests that need torch skip and say why.
CORE_FILES = {
    "test_core_install.py",
    "test_docs.py",
    "test_first_run.py",
    "test_args.py",
    "test_boxes.py",
    "test_check_config_code.py",
    "test_check_data.py",
    "test_check_data_reader.py",
    "test_cli_core.py",
    "test_code_reader.py",
    "test_data_formats.py",
    "test_fuzz_inputs.py",
    "test_launch.py",
    "test_launchers.py",
    "test_registry.py",
    "test_report.py",
    "test_settings.py",
    "test_reader_train_step.py",
}
_ONLY = {"compat": COMPAT_FILES, "core": CORE_FILES}  # `-m NAME` collects only these files


def pytest_ignore_collect(collection_path, config):
    only = _ONLY.get(config.getoption("markexpr", ""))
    if only is not None and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return collection_path.name not in only or None
    return None


def pytest_collection_modifyitems(config, items):
    long_fuzz = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz-10k"  # hours, by design: no per-test timeout
    for item in items:
        if item.path.name in COMPAT_FILES:
            item.add_marker(pytest.mark.compat)
        if item.path.name in CORE_FILES:
            item.add_marker(pytest.mark.core)
        if long_fuzz:
            item.add_marker(pytest.mark.timeout(0), append=False)  # before any explicit mark


#: tests/test_readme_walk.py (the module pytest collected) when its walk test is selected:
#: `synthetic_root` starts that walk in the background as soon as the synthetic data exists.
README_WALK = pytest.StashKey[object]()


def pytest_collection_finish(session):
    for item in session.items:
        if item.name == "test_the_readme_runs_in_order_from_a_fresh_copy":
            session.config.stash[README_WALK] = item.module


def pytest_sessionfinish(session):
    walk = session.config.stash.get(README_WALK, None)
    if walk is not None:
        walk.stop_walk()  # a walk still running (an interrupted session) leaves no command behind


def pytest_runtest_setup(item):
    if item.get_closest_marker("subject") is not None:
        skip_without_subject()
    if item.get_closest_marker("transformers") is not None:
        from fgclip_doctor.environment import transformers_version

        if transformers_version() is None:
            pytest.skip("types flags against transformers' TrainingArguments: transformers is not installed")


@pytest.fixture
def subject_here() -> None:
    """Skips the requesting test where the bundled subject cannot run (for a conditional need:
    `request.getfixturevalue("subject_here")`; the `subject` marker for a whole test)."""
    skip_without_subject()


def skip_without_subject() -> None:
    """Skip the calling test when the bundled subject cannot run here (transformers < 5)."""
    from fgclip_doctor.environment import subject_unavailable

    why = subject_unavailable()
    if why:
        pytest.skip(why.split(":")[0])


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory, request) -> Path:
    """The synthetic data + tiny base (`<root>/base`, `train.jsonl`, `val.jsonl`, `tokenizer/`).

    Also points `FGCLIP_CACHE` at it for the session, so `--preset tiny` / `--preset seed-bug`
    (in-process or in a subprocess) find it instead of generating into ~/.cache: every entry point
    reads it at the call (fgclip.presets.default_cache), so the environment is the one switch.

    Once it exists, the README walk starts in the background if its test is selected (its commands
    are subprocesses, mostly on one core: they run while the tests before it do; see
    tests/test_readme_walk.py `Walk`).
    """
    skip_without_subject()
    import torch

    from fgclip import presets

    cache = os.environ.get("FGCLIP_CACHE")
    cache_dir = Path(cache) if cache else tmp_path_factory.mktemp("fgclip-cache")
    # Build at torch's default thread count, whichever module asks first (`one_torch_thread` may
    # be active): the same base as `python -m fgclip.synthetic` or a prebuilt FGCLIP_CACHE.
    threads = torch.get_num_threads()
    torch.set_num_threads(_THREADS_BEFORE[0] if _THREADS_BEFORE else threads)
    try:
        root = presets.ensure_synthetic(cache_dir / "synthetic-v1")
    finally:
        torch.set_num_threads(threads)
    mp = pytest.MonkeyPatch()
    mp.setenv("FGCLIP_CACHE", str(cache_dir))
    walk = request.config.stash.get(README_WALK, None)
    if walk is not None:
        walk.start_walk(tmp_path_factory.mktemp("readme-walk"), root)
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def tiny_subject_run(synthetic_root, tmp_path_factory):
    """The subject's healthy `--preset tiny` run, trained once per session and only read after:
    (trainer, stdout, output_dir). 60 optimizer steps with a checkpoint every 20 (checkpoint-20,
    -40, -60, then the final save in output_dir), ENABLE_RUNTIME_DIAG=1 (its diag lines are in
    stdout), in-process on one torch thread. tests/test_train.py reads the trainer, its log and
    checkpoint-60; tests/test_inspect_ckpt.py inspects a copy of output_dir (its `healthy` run).
    """
    import contextlib
    import io

    import torch

    from fgclip.train import main

    out = tmp_path_factory.mktemp("tiny-subject")
    args = ["--preset", "tiny", "--save_steps", "20", "--output_dir", str(out)]
    buf, threads = io.StringIO(), torch.get_num_threads()
    torch.set_num_threads(1)  # as `one_torch_thread`: whichever module asks first
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
            mp.setenv("ENABLE_RUNTIME_DIAG", "1")
            trainer = main(args + ["--report_to", "none", "--disable_tqdm", "True"])
    finally:
        torch.set_num_threads(threads)
    return trainer, buf.getvalue(), out


@pytest.fixture(scope="session")
def tiny_tokenizer(synthetic_root):
    """The tiny base's word-level tokenizer (eos/bos/pad ids match the base)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(synthetic_root / "base"))


@pytest.fixture
def runtime_diag(monkeypatch):
    """ENABLE_RUNTIME_DIAG=1 for one test (the seed's diag lines are printed)."""
    monkeypatch.setenv("ENABLE_RUNTIME_DIAG", "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one intra-op thread for the rest of the requesting module (or use
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`). Tiny-model training is about as
    fast on one thread, while two threads slow down 10x and more on a 2-core machine that is
    running anything else (many tiny parallel ops per step)."""
    import torch

    _THREADS_BEFORE.append(torch.get_num_threads())
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(_THREADS_BEFORE.pop())
