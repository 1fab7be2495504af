"""The reader on code nobody here had read (issue 18, the rest of it, item 6): tests/trees/clip4clip,
a CLIP4Clip style video-text retrieval fine-tuning (our own code in that project's style), launched
the way its README does. What a careful reviewer reads from the code, each with its line:

- `--batch_size` is the global batch: each process's DataLoader takes `batch_size // n_gpu`, with
  `args.n_gpu = torch.cuda.device_count()` set after parsing: the training machine's GPU count,
  unknown here, so the per-device batch is unknown (never the flag's 128, never a global of 512);
- the CLIP weights load over the constructor's `logit_scale = ones([])`: the start is the
  checkpoint's (modules/ViT-B-32.pt, not shipped), never the constructor's 1.0;
- one global term: CrossEn (log_softmax + diag) on `logit_scale * text @ video.T`, the scale coming
  back from get_similarity_logits, both sides gathered through `allgather = AllGather.apply`;
- logit_scale decays (weight_decay 0.2: the no-decay list names only biases and LayerNorm), no clamp;
- the CLIP groups train at lr x coef_lr (1e-7), the others at --lr (1e-4).
"""

from __future__ import annotations

import pytest
from test_check_config_code import run, status, tree
from test_check_config_families import edit
from test_reader_configs import table

SCRIPT = "scripts/run_msrvtt.sh"


@pytest.fixture(scope="module")
def read(tmp_path_factory):
    c4c = tree(tmp_path_factory.mktemp("c4c"), "clip4clip")
    return run(c4c, SCRIPT)


def test_the_batch_each_process_loads_is_unknown_never_the_flag(read):
    _, found, facts, _ = read
    assert facts["run.world_size"][0] == 4 and facts["code.train_function"][0] == "main_task_retrieval.py:113 main"
    assert "train.per_device_batch" not in facts and "train.global_batch" not in facts
    skip = found[("FGD201", "global")]
    assert skip["status"] == "SKIP"
    assert (
        "main_task_retrieval.py:121 DataLoader: the batch_size handed to the DataLoader is not known" in skip["message"]
    )
    assert "main_task_retrieval.py:58: torch.cuda.device_count() counts the GPUs of the machine" in skip["message"]


def test_the_scale_starts_at_the_loaded_weights_not_the_constructor(read):
    _, found, facts, _ = read
    assert "scale.global.init" not in facts  # never ones([]) = 1.0 once the CLIP weights load over it
    assert facts["scale.global.init_from"] == ("pretrained weights (modules/modeling.py:29)", "modules/modeling.py:29")
    assert ("FGD102", "global") not in found
    assert status(found, "FGD102", "clamp") == "WARN" and facts["scale.clamp"][0] is False
    assert status(found, "FGD103", "logit_scale") == "WARN"  # decayed at 0.2 with the weights


def test_the_global_term_through_a_returned_scale_and_an_aliased_gather(read):
    _, found, facts, _ = read
    assert facts["loss.terms"][0] == ["global"]
    assert facts["loss.global.kind"] == ("softmax", "modules/until_module.py:8")  # log_softmax + diag
    assert facts["features.gathered.global"] == (True, "modules/modeling.py:36")  # allgather = AllGather.apply
    assert status(found, "FGD209") == "PASS" and status(found, "FGD704", "global") == "PASS"


def test_group_learning_rates_from_the_codes_group_dicts(read):
    _, found, facts, _ = read
    lrs = [g["lr"] for g in facts["optim.code_group_lrs"][0]]
    assert lrs == [pytest.approx(1e-7), None, pytest.approx(1e-7), None]  # None: the optimizer's --lr
    lr = found[("FGD603", "lr")]
    assert lr["status"] == "PASS" and lr["measured"] == "min lr 1e-7" and "every group" not in lr["message"]


def test_a_groups_own_lr_unknown_is_no_pass(tmp_path):
    c4c = tree(tmp_path, "clip4clip")
    edit(c4c / SCRIPT, "--coef_lr 1e-3", "--coef_lr $1")
    _, found, facts, _ = run(c4c, SCRIPT)
    assert "optim.code_group_lrs" not in facts
    lr = found[("FGD603", "lr")]
    assert lr["status"] == "SKIP" and "main_task_retrieval.py:87: group 0 has its own lr, not known" in lr["message"]


def test_an_evaluation_loader_is_not_the_training_batch(tmp_path):
    c4c = tree(tmp_path, "clip4clip")  # the loader given --batch_size_val: evaluation, never the run's batch
    edit(c4c / "main_task_retrieval.py", "batch_size=args.batch_size // args.n_gpu,", "batch_size=args.batch_size_val,")
    _, _, facts, _ = run(c4c, SCRIPT)
    assert facts["train.per_device_batch"] == (128, "scripts/run_msrvtt.sh:5 --batch_size")  # by name, as before


def test_an_init_model_the_code_writes_over_is_not_its_start(tmp_path):
    """--init_model's state dict gets CLIP's tensors written over it (`state_dict["clip." + key] =
    val.clone()`) before the load: its own clip.logit_scale (4.0 here) is not where the run starts."""
    import torch

    c4c = tree(tmp_path, "clip4clip")
    torch.save({"clip.logit_scale": torch.tensor(4.0)}, c4c / "init.bin")
    edit(c4c / SCRIPT, "--pretrained_clip_name ViT-B/32", "--pretrained_clip_name ViT-B/32 --init_model init.bin")
    _, found, facts, _ = run(c4c, SCRIPT)
    assert "scale.global.init" not in facts and ("FGD102", "global") not in found
    shown = table(c4c, SCRIPT)
    assert "the weights loaded at main_task_retrieval.py:68 are changed at modules/modeling.py:27 first" in shown
