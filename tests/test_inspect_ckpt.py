"""inspect-ckpt end to end on checkpoints written by real runs: the subject (healthy, seed-bug),
a plain transformers CLIPModel trained by the HF Trainer at learning rate 0, DeepSpeed ZeRO-2
(when installed), foreign layouts and broken inputs. Every inspected file is hashed before and
after: the doctor never writes into what it inspects."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from schema import exit_of, validate
from typer.testing import CliRunner

from fgclip_doctor.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


# ---- real runs, trained once per module --------------------------------------------------------


class _Pairs(torch.utils.data.Dataset):
    """Near-identical image / caption pairs: a model at init cannot tell them apart."""

    def __init__(self, n: int = 256, vocab: int = 100) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.full((n, 8), 5)
        self.ids[:, 3] = torch.randint(1, vocab - 2, (n,), generator=g)
        self.ids[:, -1] = vocab - 1  # EOS last
        self.pix = torch.randn(1, 3, 16, 16, generator=g) + 0.05 * torch.randn(n, 3, 16, 16, generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "pixel_values": self.pix[i]}


def _collate(rows: list[dict]) -> dict:
    return {
        "input_ids": torch.stack([r["input_ids"] for r in rows]),
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "return_loss": True,
    }


def train_plain_clip(out: Path) -> None:
    """A tiny transformers.CLIPModel, HF Trainer, learning rate 0, batch 64: loss stays ln 64."""
    from transformers import CLIPConfig, CLIPModel, Trainer, TrainingArguments

    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=100,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            eos_token_id=99,
            bos_token_id=98,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    args = TrainingArguments(
        str(out),
        per_device_train_batch_size=64,
        learning_rate=0.0,
        max_steps=24,
        logging_steps=4,
        save_strategy="steps",
        save_steps=12,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    Trainer(model=CLIPModel(cfg), args=args, train_dataset=_Pairs(), data_collator=_collate).train()


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(synthetic_root, tmp_path_factory, request):
    """healthy (tiny, 60 steps, a checkpoint every 20), seed-bug (batch 1, 8 steps), plain CLIP.

    The healthy run is a copy of the session's `tiny_subject_run` (tests/conftest.py: `--preset tiny
    --save_steps 20`, trained once for this module and tests/test_train.py); the copy keeps this
    module's hashes to its own folder. FGCLIP_INSPECT_RUNS=DIR keeps the runs in DIR and reuses the
    finished ones (for iterating)."""
    from fgclip.train import main

    keep = os.environ.get("FGCLIP_INSPECT_RUNS")
    root = Path(keep) if keep else tmp_path_factory.mktemp("runs")
    jobs = {
        "healthy": lambda out: shutil.copytree(request.getfixturevalue("tiny_subject_run")[2], out),
        "seed": lambda out: main(
            [
                "--preset",
                "seed-bug",
                "--per_device_train_batch_size",
                "1",
                "--max_steps",
                "8",
                "--save_steps",
                "8",
                "--logging_steps",
                "2",
                "--output_dir",
                out,
            ]
        ),
        "clip": lambda out: train_plain_clip(Path(out)),
    }
    for name, train in jobs.items():
        done = root / f"{name}.done"
        if not done.exists():
            shutil.rmtree(root / name, ignore_errors=True)  # never auto-resume a half run
            train(str(root / name))
            done.touch()
    return root


@pytest.fixture(autouse=True)
def _untouched(request):
    """Every file of the runs is byte-identical after each test."""
    if "runs" not in request.fixturenames:
        yield
        return
    root = request.getfixturevalue("runs")
    before = _hashes(root)
    yield
    assert _hashes(root) == before


def _inputs(args: tuple[str, ...]) -> dict[str, object]:
    """Hashes of every existing path among the arguments (checked after each run); what an option
    writes (`--plot FILE`, `--output FILE`) is the command's output, not what it inspects."""
    written = {b for a, b in zip(args, args[1:]) if a in ("--plot", "--output", "-o")}
    paths = [Path(a) for a in args if not a.startswith("-") and a not in written and Path(a).exists()]
    return {str(p): _hashes(p) if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def inspect(*args: str, codes: tuple[int, ...] = (0, 1)) -> tuple[int, dict]:
    before = _inputs(args)
    result = runner.invoke(app, ["inspect-ckpt", *args, "--format", "json"])
    assert _inputs(args) == before
    assert result.exit_code in codes, result.output + repr(result.exception)
    doc = json.loads(result.stdout)
    validate(doc, extra={"trajectory"})
    assert result.exit_code == doc["exit_code"] == exit_of(doc)
    assert doc["exit_code"] == result.exit_code
    return result.exit_code, doc


def find(doc: dict, rule: str, subject: str = "") -> dict:
    hits = [f for f in doc["findings"] if f["rule"] == rule and (not subject or f["subject"] == subject)]
    assert len(hits) == 1, (rule, subject, doc["findings"])
    return hits[0]


def fact(doc: dict, name: str):
    return doc["facts"][name]["value"]


def bad_input(*args: str) -> str:
    before = _inputs(args)
    result = runner.invoke(app, ["inspect-ckpt", *args])
    assert _inputs(args) == before
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgclip-doctor: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# ---- the three real runs -------------------------------------------------------------------------


def test_healthy_checkpoint(runs):
    ck = runs / "healthy" / "checkpoint-60"
    code, doc = inspect(str(ck))
    assert code == 0
    weights = load_file(ck / "model.safetensors")
    for scale, key in (
        ("global", "logit_scale"),
        ("finegrained", "logit_scale_finegrained"),
        ("hardneg", "logit_scale_hardneg"),
    ):
        assert fact(doc, f"scale.{scale}.value") == weights[key].item()
        assert fact(doc, f"scale.{scale}.init") == pytest.approx(math.log(100), abs=1e-6)
    assert fact(doc, "bank.enabled_at_call") == weights["memory_bank.enabled_at_call"].item() == 50
    assert fact(doc, "bank.fill") == 128 and fact(doc, "bank.queue_random") is False
    assert find(doc, "bank-active")["status"] == "PASS"
    assert find(doc, "bank-persist")["status"] == "PASS"
    for term in ("global", "region", "hardneg"):
        assert find(doc, "loss-chance", term)["status"] == "PASS"
    assert fact(doc, "candidates.global") == 8 and fact(doc, "candidates.hardneg") == 11
    assert fact(doc, "loss.chance.global") == pytest.approx(2 * math.log(8))
    assert {f["status"] for f in doc["findings"] if f["rule"] in ("nonfinite", "resume-schedule")} == {"PASS"}
    shown = runner.invoke(app, ["inspect-ckpt", str(ck)], env={"COLUMNS": "200"})
    assert shown.exit_code == doc["exit_code"]  # the table's run ends as the JSON one does
    table = shown.stdout
    assert "Loss terms" in table and "region_loss" in table and any(c in table for c in "▁▂▃▄▅▆▇█")


def test_run_dir_shows_the_trajectory(runs):
    code, doc = inspect(str(runs / "healthy"))
    rows = doc["trajectory"]
    assert [r["step"] for r in rows] == [20, 40, 60]
    for r in rows:
        w = load_file(runs / "healthy" / f"checkpoint-{r['step']}" / "model.safetensors")
        assert r["scales"]["finegrained"] == w["logit_scale_finegrained"].item()
        assert set(r["losses"]) == {"global", "region", "hardneg"}
    assert rows[0]["bank"]["enabled_at_call"] == -1 and rows[-1]["bank"]["enabled_at_call"] == 50
    assert fact(doc, "optim.group_counts") == {r["checkpoint"]: 6 for r in rows}
    shown = runner.invoke(app, ["inspect-ckpt", str(runs / "healthy")], env={"COLUMNS": "200"})
    assert shown.exit_code == doc["exit_code"]
    text = shown.stdout
    assert "Trajectory" in text and "checkpoint-20" in text and "checkpoint-60" in text
    # at step 20 the bank (warmup 50 forward calls) is not due yet: not a failure
    _, early = inspect(str(runs / "healthy" / "checkpoint-20"))
    assert find(early, "bank-active")["status"] == "PASS" and "not yet" in find(early, "bank-active")["message"]


def test_seed_bug_fails_bank_active(runs, tmp_path, monkeypatch):
    ck = runs / "seed" / "checkpoint-8"
    code, doc = inspect(str(ck))
    assert code == 1
    active = find(doc, "bank-active")
    assert active["status"] == "FAIL" and "never" in active["message"]
    assert fact(doc, "bank.enabled_at_call") == -1 and fact(doc, "bank.forward_calls") == 64
    init = find(doc, "logit-scale-init", "finegrained")
    assert init["status"] == "FAIL" and "2.6592 (T 14.3)" in init["message"]
    assert fact(doc, "scale.finegrained.value") == load_file(ck / "model.safetensors")["logit_scale_finegrained"].item()
    assert fact(doc, "train.grad_accum") == 8
    # batch 1: the global loss has one candidate per row, zero by construction
    assert find(doc, "loss-chance", "global")["status"] == "FAIL"
    assert find(doc, "loss-chance", "region")["status"] == "SKIP"  # step 8 < 20: too early
    (tmp_path / "pyproject.toml").write_text("[tool.fgclip-doctor.thresholds.loss-chance]\nmin_steps = 4\n")
    monkeypatch.chdir(tmp_path)
    _, doc = inspect(str(ck))
    region = find(doc, "loss-chance", "region")
    assert region["status"] == "PASS" and "x chance" in region["measured"]


def test_plain_clip_at_lr_0_fails_loss_chance(runs):
    code, doc = inspect(str(runs / "clip"))
    assert code == 1
    assert fact(doc, "ckpt.layout") == "hf-clip"
    chance = find(doc, "loss-chance", "global")
    assert chance["status"] == "FAIL" and fact(doc, "candidates.global") == 64
    assert fact(doc, "loss.chance.global") == pytest.approx(math.log(64))
    last = fact(doc, "history.series")["loss"][-1][1]
    assert abs(last - math.log(64)) < 0.1
    assert find(doc, "logit-scale-frozen", "global")["status"] == "WARN"  # lr 0, across checkpoints
    for rule in ("bank-active", "bank-persist"):
        f = find(doc, rule)
        assert f["status"] == "SKIP" and f["message"] == "no memory bank in this model"
    assert find(doc, "resume-schedule", "lr")["status"] == "PASS"


@pytest.mark.timeout(1800)  # a DeepSpeed ZeRO-2 run in a subprocess (up to 900 s)
def test_deepspeed_zero2_run(synthetic_root, tmp_path):
    pytest.importorskip("deepspeed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ds"
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONPATH=os.pathsep.join(sys.path))
    # fgclip.train unchanged, but without DeepSpeed's shared-memory allreduce for the CPU: its C++ build
    # takes about a minute of both cores on a clean machine, and gloo's allreduce gives the same sums
    train = tmp_path / "train_without_shm_build.py"
    train.write_text(
        "import runpy, deepspeed\n"
        "deepspeed.ops.__compatible_ops__['deepspeed_shm_comm'] = False\n"
        "runpy.run_module('fgclip.train', run_name='__main__', alter_sys=True)\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        str(train),
        "--preset",
        "tiny",
        "--use_cpu",
        "True",
        "--deepspeed",
        str(ROOT / "scripts" / "zero2.json"),
        "--max_steps",
        "4",
        "--save_steps",
        "4",
        "--logging_steps",
        "1",
        "--output_dir",
        str(out),
    ]
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    ck = out / "checkpoint-4"
    assert (ck / "latest").is_file()
    before = _hashes(out)
    _, doc = inspect(str(ck))
    w = load_file(ck / "model.safetensors")
    assert fact(doc, "scale.finegrained.value") == w["logit_scale_finegrained"].item()
    assert fact(doc, "run.world_size") == 2 and fact(doc, "candidates.global") == 16
    assert fact(doc, "bank.forward_calls") == 4
    # the warmup (50 forward calls) is longer than this 4-step run: the bank never switched on
    assert find(doc, "bank-active")["status"] == "FAIL" and fact(doc, "bank.enabled_at_call") == -1
    assert fact(doc, "optim.group_lrs") == pytest.approx([4e-4] * 6)  # from ZeRO's optimizer states
    assert find(doc, "resume-schedule", "param groups")["status"] == "PASS"
    assert _hashes(out) == before


# ---- foreign layouts ------------------------------------------------------------------------------


def test_foreign_layouts(runs, tmp_path):
    w = load_file(runs / "healthy" / "checkpoint-60" / "model.safetensors")
    ddp = tmp_path / "ddp.bin"
    torch.save({f"module.{k}": v for k, v in w.items()}, ddp)
    _, doc = inspect(str(ddp))
    assert fact(doc, "ckpt.layout") == "fgclip" and fact(doc, "ckpt.prefix") == "module."
    assert fact(doc, "scale.hardneg.value") == w["logit_scale_hardneg"].item()
    assert find(doc, "bank-persist")["status"] == "PASS"
    assert find(doc, "loss-chance")["status"] == "SKIP"  # a bare file: no history

    v1 = {
        k.replace("logit_scale_finegrained", "logit_scale_finegraind"): v
        for k, v in w.items()
        if not k.startswith(("memory_bank.", "roi_projection."))
    }
    save_file(v1, tmp_path / "fgclip_v1.safetensors")
    _, doc = inspect(str(tmp_path / "fgclip_v1.safetensors"))
    assert fact(doc, "ckpt.layout") == "fgclip-v1"
    assert fact(doc, "scale.finegrained.value") == w["logit_scale_finegrained"].item()
    assert find(doc, "bank-persist")["message"] == "no memory bank in this model"

    oc = {
        "module.logit_scale": torch.tensor(4.6052),
        "module.visual.conv1.weight": torch.randn(8, 3, 4, 4),
        "module.transformer.resblocks.0.attn.in_proj_weight": torch.randn(24, 8),
        "module.token_embedding.weight": torch.randn(10, 8),
        "module.text_projection": torch.randn(8, 8),
    }
    torch.save({"epoch": 3, "name": "ViT-B-16", "state_dict": oc}, tmp_path / "epoch_3.pt")
    _, doc = inspect(str(tmp_path / "epoch_3.pt"))
    assert fact(doc, "ckpt.layout") == "open_clip"
    assert fact(doc, "scale.global.value") == pytest.approx(4.6052)
    assert find(doc, "logit-scale-clamp", "global")["status"] == "PASS"
    shown = runner.invoke(app, ["inspect-ckpt", str(tmp_path / "epoch_3.pt")])
    assert shown.exit_code == doc["exit_code"] and "open_clip layout" in shown.stdout


# ---- each rule fires, and stays silent, on real checkpoints ---------------------------------------


def _copy(runs: Path, tmp_path: Path, name: str = "checkpoint-60") -> Path:
    dst = tmp_path / name
    shutil.copytree(runs / "healthy" / name, dst)
    return dst


def test_bank_persist_fires_on_a_missing_or_random_queue(runs, tmp_path):
    ck = _copy(runs, tmp_path)
    w = load_file(ck / "model.safetensors")
    save_file(
        {k: v for k, v in w.items() if k not in ("memory_bank.queue", "memory_bank.ptr")}, ck / "model.safetensors"
    )
    _, doc = inspect(str(ck))
    f = find(doc, "bank-persist")
    assert f["status"] == "FAIL" and "queue" in f["measured"] and "ptr" in f["measured"]
    # a queue that is still its random init (unit rows) after 60 steps: never filled
    g = torch.Generator().manual_seed(1)
    w["memory_bank.queue"] = torch.nn.functional.normalize(torch.randn(128, 64, generator=g), dim=1)
    save_file(w, ck / "model.safetensors")
    _, doc = inspect(str(ck))
    f = find(doc, "bank-persist")
    assert f["status"] == "FAIL" and "never filled" in f["message"] and fact(doc, "bank.queue_random") is True
    assert fact(doc, "bank.queue_cosine")["std"] == pytest.approx(1 / 8, rel=0.2)


def test_loss_milestones(runs, tmp_path, monkeypatch):
    ck = str(runs / "healthy" / "checkpoint-60")
    _, doc = inspect(ck)
    assert find(doc, "loss-milestones")["status"] == "SKIP"  # opt-in
    code, doc = inspect(
        ck,
        "--expect",
        "region_loss@50<1.0",
        "--expect",
        "region_loss@200<0.7",
        "--expect",
        "region@10<5",
        "--expect",
        "loss@60<=100",
    )
    assert code == 1
    assert find(doc, "loss-milestones", "region_loss@50<1.0")["status"] == "FAIL"
    assert "not reached step 200" in find(doc, "loss-milestones", "region_loss@200<0.7")["message"]
    assert find(doc, "loss-milestones", "region@10<5")["status"] == "PASS"
    assert find(doc, "loss-milestones", "loss@60<=100")["status"] == "PASS"
    assert "expected KEY@STEP<VALUE" in bad_input(ck, "--expect", "region_loss@fifty<1")
    (tmp_path / "pyproject.toml").write_text('[tool.fgclip-doctor]\nexpect = ["region_loss@50<5.0"]\n')
    monkeypatch.chdir(tmp_path)
    _, doc = inspect(ck)
    assert find(doc, "loss-milestones", "region_loss@50<5.0")["status"] == "PASS"


def test_nonfinite_in_history_and_in_tensors(runs, tmp_path):
    ck = _copy(runs, tmp_path)
    state = json.loads((ck / "trainer_state.json").read_text())
    state["log_history"][-2]["region_loss"] = float("nan")
    state["log_history"][-2]["grad_norm"] = float("inf")
    (ck / "trainer_state.json").write_text(json.dumps(state))  # Python writes NaN / Infinity
    _, doc = inspect(str(ck))
    f = find(doc, "nonfinite", "history")
    assert f["status"] == "FAIL" and "region_loss=nan at step 55" in f["message"]
    assert find(doc, "nonfinite", "weights")["status"] == "PASS"
    # a NaN deep in a weight that no check reads: only --scan finds it
    ck2 = _copy(runs, tmp_path / "b")
    w = load_file(ck2 / "model.safetensors")
    key = "vision_model.encoder.layers.0.mlp.fc1.weight"
    w[key][3, 5] = float("nan")
    save_file(w, ck2 / "model.safetensors")
    _, doc = inspect(str(ck2))
    assert find(doc, "nonfinite", "weights")["status"] == "PASS"
    _, doc = inspect(str(ck2), "--scan")
    f = find(doc, "nonfinite", "weights")
    assert f["status"] == "FAIL" and key in f["message"] and fact(doc, "weights.scanned") is True


def test_scan_reports_progress(runs):
    from fgclip_doctor.commands.inspect_ckpt import build_report
    from fgclip_doctor.settings import Settings

    seen: list[tuple[int, int]] = []
    report = build_report(
        [runs / "healthy" / "checkpoint-60"],
        Settings(),
        scan=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    size = (runs / "healthy" / "checkpoint-60" / "model.safetensors").stat().st_size
    assert seen and seen[-1][0] == seen[-1][1] and 0.9 * size < seen[-1][1] < size  # tensor bytes
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert report.facts.value("weights.nonfinite") == {}


def test_resume_schedule_fires_on_a_mismatched_lr_state(runs, tmp_path):
    ck = _copy(runs, tmp_path, "checkpoint-40")
    _, doc = inspect(str(ck))
    assert find(doc, "resume-schedule", "lr")["status"] == "PASS"
    sched = torch.load(ck / "scheduler.pt", weights_only=True)
    sched["last_epoch"] = 320  # stepped once per forward call at accumulation 8
    torch.save(sched, ck / "scheduler.pt")
    _, doc = inspect(str(ck))
    f = find(doc, "resume-schedule", "lr")
    assert f["status"] == "FAIL" and "step 320" in f["message"]
    sched["last_epoch"] = 40
    sched["_last_lr"] = [x * 3 for x in sched["_last_lr"]]
    torch.save(sched, ck / "scheduler.pt")
    opt = torch.load(ck / "optimizer.pt", weights_only=True)
    opt["param_groups"] = opt["param_groups"][:-1]
    torch.save(opt, ck / "optimizer.pt")
    _, doc = inspect(str(ck))
    assert find(doc, "resume-schedule", "lr")["status"] == "FAIL"
    groups = find(doc, "resume-schedule", "param groups")
    assert groups["status"] == "FAIL" and "optimizer 5, scheduler 6" in groups["message"]


def test_json_and_junit(runs, tmp_path):
    out = tmp_path / "report.xml"
    result = runner.invoke(app, ["inspect-ckpt", str(runs / "seed"), "--format", "junit", "--output", str(out)])
    assert result.exit_code == 1
    suite = ET.parse(out).getroot().find("testsuite")
    assert suite.get("name") == "fgclip-doctor.inspect-ckpt"
    failed = {c.get("name") for c in suite.findall("testcase") if c.find("failure") is not None}
    assert "bank-active" in failed
    assert bad_input(str(runs / "healthy"), "--output", str(runs / "healthy" / "r.json")).endswith(
        f"would write into the inspected {runs / 'healthy'}"
    )


def test_plot(runs, tmp_path, monkeypatch):
    ck = str(runs / "healthy" / "checkpoint-60")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert "--plot needs matplotlib" in bad_input(ck, "--plot", str(tmp_path / "loss.png"))
    monkeypatch.delitem(sys.modules, "matplotlib")
    pytest.importorskip("matplotlib")
    code, _ = inspect(ck, "--plot", str(tmp_path / "loss.png"))
    assert code == 0 and (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_safetensors_path_never_imports_torch(runs):
    code = (
        "import sys, json; from typer.testing import CliRunner; from fgclip_doctor.cli import app\n"
        f"r = CliRunner().invoke(app, ['inspect-ckpt', {str(runs / 'healthy')!r}, '--format', 'json'])\n"
        "assert r.exit_code == 0, r.output; assert json.loads(r.stdout)['trajectory']\n"
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


# ---- bad inputs: exit 2, one line, nothing executed, nothing written ------------------------------

MALICIOUS = """
import os, pickle
class Boom:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
with open({path!r}, "wb") as fh:
    pickle.dump({{"logit_scale": Boom()}}, fh)
"""


def test_bad_inputs(runs, tmp_path):
    ok = load_file(runs / "healthy" / "checkpoint-60" / "model.safetensors")
    save_file(ok, tmp_path / "good.safetensors")
    raw = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    assert "truncated safetensors" in bad_input(str(tmp_path / "truncated.safetensors"))
    n = int.from_bytes(raw[:8], "little")
    (tmp_path / "claims.safetensors").write_bytes((n + 10**7).to_bytes(8, "little") + raw[8:])
    assert "the header claims" in bad_input(str(tmp_path / "claims.safetensors"))
    header = json.loads(raw[8 : 8 + n])
    end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    header["more"] = {"dtype": "F32", "shape": [10**6], "data_offsets": [end, end + 4 * 10**6]}
    text = json.dumps(header).encode()
    (tmp_path / "more.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    assert "truncated safetensors: tensor 'more' ends at byte" in bad_input(str(tmp_path / "more.safetensors"))
    (tmp_path / "empty").mkdir()
    assert "empty directory" in bad_input(str(tmp_path / "empty"))
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    assert "no model weights" in bad_input(str(tmp_path / "noweights"))
    broken = _copy(runs, tmp_path)
    (broken / "trainer_state.json").write_text('{"global_step": 60, "log_history": [')
    assert "trainer_state.json: broken JSON" in bad_input(str(broken))
    marker = tmp_path / "pwned"
    for target, pkl in (
        (tmp_path / "evil.bin", tmp_path / "evil.bin"),
        (_copy(runs, tmp_path / "c"), tmp_path / "c" / "checkpoint-60" / "training_args.bin"),
    ):
        subprocess.run([sys.executable, "-c", MALICIOUS.format(marker=marker, path=str(pkl))], check=True)
        assert "refused: the pickle wants to run code" in bad_input(str(target))
        assert not marker.exists()
    assert "no such file or directory" in bad_input(str(tmp_path / "missing"))


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"])
def test_lr_factor_matches_transformers(kind):
    from transformers import get_scheduler

    from fgclip_doctor.checks.schedule import lr_factor

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(kind, opt, num_warmup_steps=7, num_training_steps=50)
    for step in range(0, 56):
        assert lr_factor(kind, step, 7, 50) == pytest.approx(sched.lr_lambdas[0](step), abs=1e-12)
