"""Every option of every config group composes and resolves (no training): a typo in a YAML file fails here."""

import pytest
from omegaconf import OmegaConf

from flashipa_train.config import compose_train_config
from flashipa_train.train.cli import train

OPTIONS = [
    [],
    ["model/attention=dense_ipa"],
    ["model/attention=flash_ipa", "model.attention.backend=sdpa"],
    ["model/attention=inattention"],
    ["trainer=cpu"],
    ["trainer=gpu"],
    ["trainer=ddp"],
    ["logger=wandb"],
    ["logger=none"],
    ["callbacks=none"],
    ["experiment=quickstart"],
    ["experiment=finetune", "init_from=some.ckpt", "data.pdb_dir=some/folder"],
    ["debug=fdr"],
    ["debug=overfit"],
    ["debug=limit"],
    ["debug=profiler"],
]


@pytest.mark.parametrize("overrides", OPTIONS, ids=lambda o: " ".join(o) or "defaults")
def test_config_option_composes_and_resolves(overrides, tmp_path):
    cfg = compose_train_config(overrides, output_dir=tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["model"]["attention"]["name"] in ("dense_ipa", "flash_ipa", "inattention")
    assert resolved["trainer"]["_target_"] == "pytorch_lightning.Trainer"


def test_default_model_has_the_anchor_sizes(tmp_path):
    model = compose_train_config([], output_dir=tmp_path).model
    sizes = (model.c_s, model.num_blocks, model.num_heads, model.num_qk_points, model.num_v_points)
    assert sizes == (256, 6, 8, 8, 12) and (model.attention.pair_rank, model.attention.c_pair_value) == (2, 32)
    assert model.attention.name == "flash_ipa" and model.attention.backend == "auto"
    dense = compose_train_config(["model/attention=dense_ipa"], output_dir=tmp_path).model.attention
    assert dict(dense) == {"name": "dense_ipa", "backend": "torch", "c_z": 128}


@pytest.mark.parametrize(
    "given, missing",
    [(["data.pdb_dir=some/folder"], "init_from=PATH"), (["init_from=some.ckpt"], "data.pdb_dir=FOLDER")],
)
def test_finetune_says_which_required_input_is_missing(tmp_path, given, missing):
    cfg = compose_train_config(["experiment=finetune"] + given, output_dir=tmp_path)
    with pytest.raises(ValueError, match=missing):
        train(cfg)


@pytest.mark.parametrize("overrides", OPTIONS, ids=lambda o: " ".join(o) or "defaults")
def test_every_callback_entry_is_a_callback_or_null(overrides, tmp_path):
    """Only entries with a `_target_` become callbacks: a setting indented one level too little (as
    `enable_version_counter` once was) would be dropped without a word."""
    callbacks = compose_train_config(overrides, output_dir=tmp_path).get("callbacks") or {}
    for name, entry in callbacks.items():
        assert entry is None or "_target_" in entry, f"callbacks.{name} is neither a callback nor null: {entry}"


def test_best_checkpoint_resaved_after_a_resume_overwrites_its_file(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_train_config([], output_dir=tmp_path)
    assert instantiate(cfg.callbacks.model_checkpoint)._enable_version_counter is False
