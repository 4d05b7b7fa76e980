"""The attention registry: shared sizes plus each variant's own fields, the scaling sweep values, old checkpoints."""

from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from flashipa_train.checkpoint.stored_config import model_from_stored_config
from flashipa_train.config import CONFIG_DIR, compose_train_config
from flashipa_train.model import ATTENTION_VARIANTS, FlowModel, variant_backend, variant_backends, variant_fields
from flashipa_train.train.run_facts import variant_label

SIZES = dict(c_s=16, c_hidden=4, num_blocks=2, num_heads=2, num_qk_points=2, num_v_points=2, knn=4)
# what each sweep value means: variant, backend, and its own pair size (c_z or c_pair_value)
SWEEPS = {
    "scaling": {
        "dense_ipa-torch": ("dense_ipa", "torch", "c_z", 128),
        "flash_ipa-triton": ("flash_ipa", "triton", "c_pair_value", 32),
        "flash_ipa-sdpa": ("flash_ipa", "sdpa", "c_pair_value", 32),
        "inattention-sdpa": ("inattention", "sdpa", "c_pair_value", 32),
    },
    "scaling_smoke": {
        "dense_ipa-torch": ("dense_ipa", "torch", "c_z", 16),
        "flash_ipa-torch": ("flash_ipa", "torch", "c_pair_value", 8),
        "flash_ipa-sdpa": ("flash_ipa", "sdpa", "c_pair_value", 8),
        "inattention-torch": ("inattention", "torch", "c_pair_value", 8),
    },
}


def _pair_channels(model: FlowModel) -> int:
    """The pair channels the first IPA layer's output reads (c_z for dense_ipa, c_pair_value otherwise)."""
    ipa = model.attention.ipa[0]
    return ipa.linear_out.in_features // ipa.num_heads - ipa.c_hidden - 4 * ipa.num_v_points


@pytest.mark.parametrize("experiment", sorted(SWEEPS))
def test_every_sweep_value_builds_the_model_the_experiment_means(experiment, tmp_path):
    params = OmegaConf.load(Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    values = params.scaling_attention.split(",")
    assert sorted(values) == sorted(SWEEPS[experiment])
    for value in values:
        name, backend, field, size = SWEEPS[experiment][value]
        cfg = compose_train_config([f"experiment={experiment}", f"scaling_attention={value}"], output_dir=tmp_path)
        attention = OmegaConf.to_container(cfg.model.attention)
        yaml = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "model" / "attention" / f"{name}.yaml"))
        assert set(attention) == set(yaml), value  # the variant's own fields, none of another variant's
        assert (attention["name"], variant_backend(attention), attention[field]) == (name, backend, size), value
        model = instantiate(cfg.model)
        assert type(model.attention) is ATTENTION_VARIANTS[name] and _pair_channels(model) == size, value


@pytest.mark.parametrize(
    "name, field, size",
    [
        ("flash_ipa", "c_pair_value", 16),
        ("dense_ipa", "c_z", 32),
        ("inattention", "c_pair_value", 16),
        ("entmax_ipa", "c_pair_value", 16),
        ("spatial_ipa", "c_pair_value", 16),
    ],
)
def test_the_quickstart_gives_every_variant_its_own_small_pair_size(name, field, size, tmp_path):
    # train.yaml picks model/attention_size/quickstart_<variant>.yaml for the chosen variant
    cfg = compose_train_config(["experiment=quickstart", f"model/attention={name}"], output_dir=tmp_path)
    attention = OmegaConf.to_container(cfg.model.attention)
    yaml = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "model" / "attention" / f"{name}.yaml"))
    assert set(attention) == set(yaml) and attention[field] == size  # its own fields, none of another's
    model = instantiate(cfg.model)
    assert type(model.attention) is ATTENTION_VARIANTS[name] and _pair_channels(model) == size


def test_an_inline_attention_of_another_variant_is_refused_not_ignored(tmp_path):
    # Hydra merges model.attention={...} into the group's node: dense_ipa would receive flash_ipa's fields
    cfg = compose_train_config(["experiment=scaling_smoke", "model.attention={name:dense_ipa}"], output_dir=tmp_path)
    with pytest.raises(InstantiationException, match="which dense_ipa does not take"):
        instantiate(cfg.model)


def test_dense_ipa_accepts_only_the_torch_backend():
    with pytest.raises(ValueError, match="dense_ipa runs only 'torch'"):
        FlowModel({"name": "dense_ipa", "backend": "sdpa"}, **SIZES)
    assert variant_backend({"name": "dense_ipa"}) == "torch" and variant_backend({"name": "flash_ipa"}) == "auto"
    # a plot line names the backend only where the variant has a choice
    assert variant_label("dense_ipa", "torch") == "dense_ipa" and variant_label("flash_ipa", "sdpa") == "flash_ipa/sdpa"
    # each variant's accepted backends are the ones its constructor checks
    assert variant_backends("spatial_ipa") == ("auto", "triton", "torch") == variant_backends("entmax_ipa")
    assert "sdpa" in variant_backends("flash_ipa") and variant_backends("dense_ipa") == ("torch",)


@pytest.mark.parametrize("name", sorted(ATTENTION_VARIANTS))
def test_each_attention_yaml_carries_only_its_variants_own_fields(name):
    yaml = OmegaConf.load(Path(CONFIG_DIR) / "model" / "attention" / f"{name}.yaml")
    assert yaml.name == name and set(yaml) - {"name"} <= set(variant_fields(name))


@pytest.mark.parametrize(
    "name, old_fields, own",
    [
        ("dense_ipa", {"backend": "torch"}, {"c_z": 8}),
        ("flash_ipa", {"backend": "torch", "content_relpos": True}, {"pair_rank": 3, "c_pair_value": 4}),
        ("inattention", {"backend": "sdpa"}, {"pair_rank": 3, "c_pair_value": 4}),
    ],
)
def test_an_old_stored_config_rebuilds_the_same_model(name, old_fields, own):
    """Before the move, c_z / pair_rank / c_pair_value were FlowModel fields (the unused ones ignored)."""
    old = {
        "_target_": "flashipa_train.model.FlowModel",
        "attention": {"name": name, **old_fields},
        **SIZES,
        "c_z": 8,
        "pair_rank": 3,
        "c_pair_value": 4,
    }
    rebuilt = model_from_stored_config(old, "old.ckpt").state_dict()
    torch.manual_seed(0)
    today = FlowModel({"name": name, **old_fields, **own}, **SIZES).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in today.items()}
