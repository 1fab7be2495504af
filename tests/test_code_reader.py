"""The static code reader on training trees in the style of FG-CLIP v1, FG-CLIP 2, run_clip and
open_clip (tests/trees/), and on broken trees. Each fact: read where the pattern exists, absent or
the opposite value where it does not. Nothing of the trees is imported or executed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fgclip_doctor.sources.code.reader import FlagInput, read_training_code

TREES = Path(__file__).parent / "trees"
LN100 = 4.605170185988092


def read(tree: str, flags=(), entry=None, kind="script", sub=""):
    entries = {
        "fgclip_v1": "fgclip/train/train_mem.py",
        "fgclip2": "fgclip2/train/train.py",
        "run_clip": "run_clip.py",
        "open_clip": "open_clip_train.main",
    }
    if tree == "open_clip":
        kind, sub = "module", "src"
    return read_training_code(entry or entries[tree], kind, TREES / tree / sub, [], list(flags))


def flag(option, value=None, line=1):
    return FlagInput(option, value, f"train.sh:{line} {option}")


@pytest.fixture(scope="module")
def v1():
    return read(
        "fgclip_v1",
        [
            flag("--train_use_word_size", "8", 13),
            flag("--learning_rate", "1e-6", 24),
            flag("--no_such_option", "1", 30),
            flag("--warmup", "200", 31),
        ],
    )


@pytest.fixture(scope="module")
def v2():
    return read("fgclip2", [flag("--train_use_word_size", "4", 14), flag("--loss_type", "reduce", 12)])


@pytest.fixture(scope="module")
def hf():
    return read("run_clip", [flag("--per_device_train_batch_size", "64", 7)])


@pytest.fixture(scope="module")
def oc():
    return read(
        "open_clip",
        [
            flag("--batch-size", "320", 4),
            flag("--precision", "amp", 4),
            flag("--warmup", "10000", 5),
            flag("--local-loss", None, 6),
        ],
    )


def test_entry_follows_the_thin_wrapper_into_train(v1, oc):
    assert v1.facts.value("code.entry_file") == "fgclip/train/train_mem.py"
    assert v1.facts.value("code.train_function") == "fgclip/train/train_fgclip.py:38 train"
    assert v1.facts.source("code.train_function") == "fgclip/train/train_mem.py:5"
    assert "fgclip/model/clip_strc/fgclip_model.py" in v1.facts.value("code.files_read")
    assert any("package `fgclip`" in n and "editable install" in n for n in v1.notes)
    assert oc.facts.value("code.train_function") == "open_clip_train/main.py:13 main"
    assert not oc.notes  # -m from src/: every package is on sys.path[0]


def test_the_trees_are_read_not_imported(v1, v2, oc, tmp_path):
    for name in ("fgclip2", "open_clip_train", "open_clip", "run_clip", "fgclip.train.train_fgclip"):
        assert name not in sys.modules
    marker = tmp_path / "ran"
    (tmp_path / "train.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef main():\n    pass\nif __name__ == '__main__':\n    main()\n"
    )
    read_training_code("train.py", "script", tmp_path)
    assert not marker.exists()


@pytest.mark.transformers
def test_hf_parser_types_flags_and_rejects_what_the_run_would(v1):
    f = v1.facts
    assert f.value("code.parser") == "HfArgumentParser(ModelArguments, DataArguments, TrainingArguments)"
    assert f.source("code.parser") == "fgclip/train/train_fgclip.py:39"
    assert {"log_scale", "from_openai", "train_use_word_size", "text_model_lr", "learning_rate"} <= set(
        f.value("code.flags_known")
    )
    assert f.value("code.flags_accepted")["learning_rate"] == pytest.approx(1e-6)
    rejected = {r["flag"]: r for r in f.value("code.flags_rejected")}
    assert rejected["--no_such_option"]["reason"].startswith("unrecognized arguments")
    assert rejected["--no_such_option"]["source"] == "train.sh:30 --no_such_option"
    assert "ambiguous option: --warmup" in rejected["--warmup"]["reason"]  # warmup_steps / warmup_ratio
    assert v1.default("log_scale") == (4.6052, "fgclip/train/train_fgclip.py:17")
    assert v1.default("max_seq_length") == (77 * 4 - 60, "fgclip/train/train_fgclip.py:24")


def test_argparse_parser_has_no_hf_defaults_and_takes_warmup(oc):
    f = oc.facts
    assert f.value("code.parser") == "argparse.ArgumentParser"
    assert "per_device_train_batch_size" not in f.value("code.flags_known")
    assert f.value("code.flags_rejected") == []
    assert f.value("code.flags_accepted") == {
        "batch_size": 320,
        "precision": "amp",
        "warmup": 10000,
        "local_loss": True,
    }
    assert oc.default("lr") == (None, "open_clip_train/params.py:16")
    bad = read("open_clip", [flag("--precision", "fp8"), flag("--lr", "fast"), flag("--batch", "8")])
    reasons = {r["flag"]: r["reason"] for r in bad.facts.value("code.flags_rejected")}
    assert "invalid choice: 'fp8'" in reasons["--precision"]
    assert "invalid float value: 'fast'" in reasons["--lr"]
    assert bad.facts.value("code.flags_accepted") == {"batch_size": 8}  # argparse's own abbreviation


def test_auto_resume(v1, v2, hf, oc):
    assert v1.facts.value("train.auto_resume") is True
    assert v1.facts.source("train.auto_resume") == "fgclip/train/train_fgclip.py:50 glob checkpoint-*"
    assert v2.facts.value("train.auto_resume") is True
    assert hf.facts.value("train.auto_resume") is True
    assert hf.facts.value("train.auto_resume_guards") == ["overwrite_output_dir"]
    assert oc.facts.value("train.auto_resume") is False  # --resume is explicit only
    assert "train.auto_resume_guards" not in v1.facts


def test_scale_init_sources(v1, v2, oc):
    assert v1.facts.value("scale.finegrained.init_from") == "copy of logit_scale"
    assert v1.facts.source("scale.finegrained.init_from") == "fgclip/train/train_fgclip.py:44"
    assert "scale.finegrained.init" not in v1.facts  # the copy's value is the base's: not in code
    # from_pretrained replaces the config's init: the start value is the weights' (issue 18 item 2)
    assert v1.facts.value("scale.global.init_from") == "pretrained weights (fgclip/train/train_fgclip.py:41)"
    assert v2.facts.value("scale.finegrained.init_from") == "flag log_scale"
    assert v2.facts.value("scale.finegrained.init") == pytest.approx(4.6052)
    # the __init__'s torch.randn(1) is replaced by from_pretrained's weights (issue 18 item 2)
    assert v2.facts.value("bias.global.init_from") == "pretrained weights (fgclip2/train/train_stage2.py:35)"
    assert "bias.global.init_from" not in v1.facts
    assert oc.facts.value("scale.global.init") == pytest.approx(2.6592, abs=1e-4)  # np.log(1 / 0.07)


def test_clamp(v1, v2, oc):
    assert oc.facts.value("scale.clamp") is True
    assert oc.facts.value("scale.clamp_max") == pytest.approx(LN100)
    assert oc.facts.source("scale.clamp") == "open_clip_train/train.py:15"
    assert v1.facts.value("scale.clamp") is False
    assert v2.facts.value("scale.clamp") is False  # torch.clamp of a threshold is not a scale clamp
    assert "scale.clamp_max" not in v1.facts


def test_decay_and_group_lrs(v1, v2, oc):
    assert v1.facts.value("scale.finegrained.decayed") is True  # all but LayerNorm and bias decay
    assert v1.facts.source("scale.finegrained.decayed") == "fgclip/train/clip_trainer.py:7"
    assert v1.facts.value("optim.group_lr_flags") == ["text_model_lr"]
    assert v2.facts.value("scale.global.decayed") is True
    assert "transformers Trainer" in v2.facts.source("scale.global.decayed")
    assert oc.facts.value("scale.global.decayed") is False  # excluded by name and by p.ndim < 2
    assert "optim.group_lr_flags" not in oc.facts


def test_gathering_per_term(v1, v2, hf, oc):
    assert v1.facts.value("features.gathered.global") is True
    assert v1.facts.value("features.gathered.region") is False
    assert v1.facts.value("features.gathered.hardneg") is False
    assert v2.facts.value("features.gathered.global") is True  # all_gather / nn.all_reduce exchange
    assert oc.facts.value("features.gathered.global") is True  # through the gather_all helper
    assert hf.facts.value("features.gathered.global") is False
    assert "22252" in hf.facts.source("features.gathered.global")
    assert hf.facts.value("code.model") == "transformers AutoModel"


def test_loss_kind_and_bias(v1, v2, oc):
    assert v1.facts.value("loss.terms") == ["global", "hardneg", "region"]
    assert v1.facts.value("loss.global.kind") == "softmax"
    assert v2.facts.value("loss.global.kind") == "sigmoid"
    assert v2.facts.value("loss.global.logit_bias") is True
    assert v2.facts.value("loss.region.kind") == "softmax"
    assert "loss.region.logit_bias" not in v2.facts
    assert "loss.global.logit_bias" not in v1.facts
    assert oc.facts.value("loss.terms") == ["global"]


def test_world_size_source(v1, v2, oc):
    assert v2.facts.value("loss.world_size_from") == "flag train_use_word_size"
    assert v2.facts.source("loss.world_size_from") == "fgclip2/train/train_stage2.py:41"
    assert v2.facts.value("loss.world_size") == 4
    assert v2.facts.source("loss.world_size").endswith("train.sh:14 --train_use_word_size")
    default = read("fgclip2")
    assert default.facts.value("loss.world_size") == 8  # the dataclass default
    assert v1.facts.value("loss.world_size_from") == "torch.distributed"
    assert "loss.world_size" not in v1.facts
    assert oc.facts.value("loss.world_size_from") == "torch.distributed"


def test_swallowed_loss_errors(v1, v2):
    assert v2.facts.value("loss.region.errors_swallowed") is True
    assert v2.facts.value("loss.hardneg.errors_swallowed") is True
    assert v2.facts.source("loss.region.errors_swallowed") == "fgclip2/model/fgclip2_model.py:32"
    assert v2.facts.value("loss.global.errors_swallowed") is False
    assert v1.facts.value("loss.region.errors_swallowed") is False


# --- broken trees ------------------------------------------------------------------------
def _tree(tmp_path: Path, extra: dict[str, str]) -> Path:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "train.py").write_text(
        "import pathlib\nfrom pkg.model import Model\n\n\ndef main():\n"
        "    trainer = Model.from_pretrained('x')\n"
        "    if list(pathlib.Path('out').glob('checkpoint-*')):\n"
        "        trainer.train(resume_from_checkpoint=True)\n\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    for name, text in extra.items():
        (tmp_path / "pkg" / name).write_text(text)
    return tmp_path


MODEL = (
    "import torch.nn.functional as F\nfrom torch import nn\n\n\nclass Model(nn.Module):\n"
    "    def forward(self, x):\n        return F.cross_entropy(self.logit_scale.exp() * x, x)\n"
)


def test_syntax_error_is_a_note_with_its_line(tmp_path):
    root = _tree(tmp_path, {"model.py": MODEL.replace("return", "return (")})
    r = read_training_code("train.py", "script", root, ["."])
    assert any(n.startswith("pkg/model.py:7:") for n in r.notes)
    assert "loss.terms" not in r.facts and "scale.clamp" not in r.facts
    assert r.facts.value("train.auto_resume") is True  # what was read still counts


def test_huge_file_is_not_read(tmp_path):
    root = _tree(tmp_path, {"model.py": MODEL + "# " + "x" * (5 * 2**20) + "\n"})
    r = read_training_code("train.py", "script", root, ["."])
    assert any(n.startswith("pkg/model.py:1: 5.0 MB") for n in r.notes)
    assert "loss.terms" not in r.facts
    assert "loss.global.errors_swallowed" not in r.facts


def test_deep_nesting_is_a_note(tmp_path):
    deep = MODEL + "\n\nDEPTH = 1" + " + 1" * 100_000 + "\n"
    root = _tree(tmp_path, {"model.py": deep})
    r = read_training_code("train.py", "script", root, ["."])
    assert any(n.startswith("pkg/model.py:10: nesting too deep") for n in r.notes)
    assert "loss.terms" not in r.facts


def test_circular_imports_read_each_file_once(tmp_path):
    root = _tree(
        tmp_path,
        {
            "model.py": "from pkg.helpers import scale\n" + MODEL,
            "helpers.py": "from pkg.model import Model\n\n\ndef scale():\n    return Model\n",
        },
    )
    r = read_training_code("train.py", "script", root, ["."])
    assert r.notes == []
    assert sorted(r.files) == ["pkg/__init__.py", "pkg/helpers.py", "pkg/model.py", "train.py"]
    assert r.facts.value("loss.global.kind") == "softmax"


def test_missing_entry_is_a_note(tmp_path):
    r = read_training_code("nope.py", "script", tmp_path)
    assert len(r.facts) == 0 and "nope.py: no such file" in r.notes[0]
    r = read_training_code("pkg.train", "module", tmp_path)
    assert "module not found" in r.notes[0]


def test_every_fact_is_in_the_vocabulary(v1, v2, hf, oc):
    import re

    from fgclip_doctor.vocabulary import FACTS

    def generic(name: str) -> str:
        name = re.sub(r"^scale\.(global|finegrained|hardneg)\.", "scale.<scale>.", name)
        return re.sub(r"^(loss|features\.gathered)\.(global|region|hardneg|distill|ssl)(\.|$)", r"\1.<term>\3", name)

    used = {generic(n) for r in (v1, v2, hf, oc) for n in r.facts}
    assert sorted(n for n in used if n not in FACTS) == []


GATHER_FN = (
    "import torch\nimport torch.distributed as dist\n\n\nclass AllGather(torch.autograd.Function):\n"
    "    @staticmethod\n    def forward(ctx, x):\n        parts = [torch.zeros_like(x) for _ in range(2)]\n"
    "        dist.all_gather(parts, x)\n        return torch.cat(parts)\n\n\n"
    "def gather(x):\n    return AllGather.apply(x)\n"
)


def test_a_gather_through_an_autograd_function_is_a_gather(tmp_path):
    # fgclip/losses.py's gather_features: a helper that calls Function.apply, whose forward all_gathers
    model = MODEL.replace(
        "import torch.nn.functional as F\n", "import torch.nn.functional as F\nfrom pkg.dist import gather\n"
    )
    model = model.replace(
        "return F.cross_entropy(self.logit_scale.exp() * x, x)",
        "return F.cross_entropy(self.logit_scale.exp() * gather(x), x)",
    )
    root = _tree(tmp_path, {"model.py": model, "dist.py": GATHER_FN})
    r = read_training_code("train.py", "script", root, ["."])
    assert r.facts.value("features.gathered.global") is True
    assert r.facts.source("features.gathered.global").startswith("pkg/model.py:")
    (tmp_path / "plain").mkdir()
    plain = read_training_code("train.py", "script", _tree(tmp_path / "plain", {"model.py": MODEL}), ["."])
    assert plain.facts.value("features.gathered.global") is False


def test_fp16_refusal(v1, v2, oc):
    # FG-CLIP's train script stops an fp16 run before training; open_clip's amp is fp16 by design
    assert v1.facts.value("code.refuses_fp16") is True
    assert v1.facts.source("code.refuses_fp16").startswith("fgclip/train/train_fgclip.py:48")
    assert "code.refuses_fp16" not in v2.facts and "code.refuses_fp16" not in oc.facts
