"""flashipa-sample specifications: sampled backbones become PDB/mmCIF files biotite reads back, the checkpoint's
EMA weights are the ones sampled, and the Hydra CLI runs end to end on a tiny checkpoint."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("biotite")
import biotite.structure.io as structure_io  # noqa: E402

from flashipa_train.sampling import generate_backbones, load_sampler_from_checkpoint  # noqa: E402
from flashipa_train.sampling.outputs import write_structure_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "_target_": "flashipa_train.model.FlowModel",
    "attention": {"name": "flash_ipa", "backend": "torch", "pair_rank": 2, "c_pair_value": 4},
    "c_s": 16,
    "c_hidden": 8,
    "num_blocks": 1,
    "num_heads": 2,
    "num_qk_points": 2,
    "num_v_points": 2,
    "seq_transformer_layers": 1,
    "seq_transformer_heads": 2,
    "knn": 4,
}


def _tiny_parts(seed: int = 0):
    from hydra.utils import instantiate

    torch.manual_seed(seed)
    model = instantiate(OmegaConf.create(TINY_MODEL), _convert_="all").eval()
    flow_cfg = OmegaConf.load(ROOT / "configs" / "flow" / "default.yaml")
    return model, instantiate(flow_cfg), OmegaConf.to_container(flow_cfg)


def _tiny_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A flashipa-train-like checkpoint of a random tiny model whose EMA shadow differs from its raw weights.
    Returns the EMA weights."""
    model, _, flow_cfg = _tiny_parts()
    raw = model.state_dict()
    ema = {name: p.detach() + 0.01 * torch.randn_like(p) for name, p in model.named_parameters()}
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in raw.items()},
            "callbacks": {"EMA": {"decay": 0.99, "num_updates": 3, "shadow": ema}},
            "run_config": {"model": TINY_MODEL, "flow": flow_cfg},
        },
        path,
    )
    return ema


def test_samples_of_a_random_model_are_written_as_pdb_mmcif_and_bcif_that_biotite_reads_back(tmp_path):
    model, flow, _ = _tiny_parts()
    backbones = generate_backbones(model, flow, [12, 20], samples_per_length=2, num_steps=3, batch_size=2)
    assert [(b.length, b.index) for b in backbones] == [(12, 0), (12, 1), (20, 0), (20, 1)]
    paths = write_structure_files(backbones, tmp_path, formats=("pdb", "cif", "bcif"))
    assert len(paths) == 12
    for backbone in backbones:
        for path in (
            tmp_path / f"{backbone.name}.pdb",
            tmp_path / "cif" / f"{backbone.name}.cif",
            tmp_path / "bcif" / f"{backbone.name}.bcif",
        ):
            array = structure_io.load_structure(str(path))
            assert (array.atom_name == "CA").sum() == backbone.length, path
            assert array.array_length() == 4 * backbone.length
            assert abs(array.coord.reshape(-1, 4, 3) - backbone.atoms).max() < 1e-3  # PDB keeps 3 decimals


def test_sampling_is_seeded_per_length(tmp_path):
    model, flow, _ = _tiny_parts()
    alone = generate_backbones(model, flow, [16], 2, num_steps=2, seed=3)
    together = generate_backbones(model, flow, [10, 16], 2, num_steps=2, seed=3)
    assert all((a.atoms == b.atoms).all() for a, b in zip(alone, together[2:]))


def test_checkpoint_loader_uses_the_ema_weights(tmp_path):
    ema = _tiny_checkpoint(tmp_path / "tiny.ckpt")
    sampler = load_sampler_from_checkpoint(tmp_path / "tiny.ckpt")
    for name, param in sampler.model.named_parameters():
        assert torch.equal(param, ema[name]), name
    assert not sampler.model.training


def test_fp8_sampling_is_set_over_the_stored_attention_config(tmp_path):
    _tiny_checkpoint(tmp_path / "tiny.ckpt")
    assert not load_sampler_from_checkpoint(tmp_path / "tiny.ckpt").model.attention.fp8_sampling
    sampler = load_sampler_from_checkpoint(tmp_path / "tiny.ckpt", attention_overrides={"fp8_sampling": True})
    assert sampler.model.attention.fp8_sampling


def test_checkpoint_without_run_config_is_refused_with_what_to_pass(tmp_path):
    model, _, _ = _tiny_parts()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="run_config"):
        load_sampler_from_checkpoint(tmp_path / "plain.pt")


def test_flashipa_sample_command_writes_structures_metrics_and_summary(tmp_path):
    _tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "samples"
    command = [
        sys.executable,
        "-m",
        "flashipa_train.sampling.cli",
        f"ckpt_path={tmp_path / 'tiny.ckpt'}",
        "lengths=[10,14]",
        "n=2",
        f"out={out}",
        "num_steps=3",
        "device=cpu",
        "diversity=aligned",
        "progress=false",
        f"training_set={ROOT / 'data' / '1qys.pdb.gz'}",
        "model.attention.fp8_sampling=true",
    ]  # accepted; FP8 runs on CUDA only (no effect here)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="1")
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "flashipa-sample: 4 backbones" in done.stdout
    assert sorted(p.name for p in out.glob("*.pdb")) == ["len10_0.pdb", "len10_1.pdb", "len14_0.pdb", "len14_1.pdb"]
    assert len(list((out / "cif").glob("*.cif"))) == 4
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["length"]) for r in rows] == [10, 10, 14, 14]
    summary = {r["set"]: r for r in csv.DictReader(open(out / "summary.csv"))}
    assert set(summary) == {"10", "14", "all", "training"}
    assert abs(float(summary["training"]["ca_ca_mean"]) - 3.80) < 0.05
    assert (out / ".hydra" / "config.yaml").is_file()


def test_without_biotite_the_samples_are_kept_as_a_tensor_file(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from flashipa_train.sampling import cli

    _tiny_checkpoint(tmp_path / "tiny.ckpt")
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if name == "biotite" else real_find_spec(name)
    )
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "sample",
            [
                f"ckpt_path={tmp_path / 'tiny.ckpt'}",
                "lengths=[9]",
                "n=2",
                f"out={tmp_path / 's'}",
                "num_steps=2",
                "device=cpu",
                "progress=false",
            ],
        )
    result = cli.sample(cfg)
    saved = torch.load(tmp_path / "s" / "samples.pt", weights_only=True)
    assert result["files"] == [tmp_path / "s" / "samples.pt"]
    assert {name: tuple(t.shape) for name, t in saved.items()} == {"len9_0": (9, 4, 3), "len9_1": (9, 4, 3)}


def test_from_samples_turns_a_saved_tensor_file_into_structures_and_metrics(tmp_path):
    from hydra import compose, initialize_config_dir

    from flashipa_train.sampling import cli

    model, flow, _ = _tiny_parts()
    backbones = generate_backbones(model, flow, [11], samples_per_length=2, num_steps=2)
    torch.save({b.name: torch.from_numpy(b.atoms) for b in backbones}, tmp_path / "samples.pt")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "sample", [f"from_samples={tmp_path / 'samples.pt'}", f"out={tmp_path / 'o'}", "diversity=aligned"]
        )
    result = cli.sample(cfg)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.pdb")) == ["len11_0.pdb", "len11_1.pdb"]
    assert [int(r["length"]) for r in result["rows"]] == [11, 11]
    assert set(result["summaries"]) == {"11", "all"}


def test_without_arguments_flashipa_sample_says_what_to_pass_in_one_line_and_makes_no_folder(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "flashipa_train.sampling.cli"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "ckpt_path=CKPT" in done.stderr and "--help" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_flashipa_sample_help_lists_its_own_options_not_the_training_groups(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "flashipa_train.sampling.cli", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert "flashipa-sample ckpt_path=CKPT" in done.stdout and "from_samples: null" in done.stdout
    assert "model/attention" not in done.stdout and "Configuration groups" not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_samples_pt_round_trips_and_other_files_are_refused_with_the_expected_format(tmp_path):
    from flashipa_train.sampling.outputs import load_samples, save_samples

    model, flow, _ = _tiny_parts()
    backbones = generate_backbones(model, flow, [7, 9], samples_per_length=2, num_steps=2)
    loaded = load_samples(save_samples(backbones, tmp_path / "samples.pt"))
    assert [(b.length, b.index) for b in loaded] == [(7, 0), (7, 1), (9, 0), (9, 1)]
    assert all((a.atoms == b.atoms).all() for a, b in zip(loaded, backbones))
    torch.save({"atoms": torch.zeros(2, 9, 4, 3), "lengths": torch.tensor([9, 9])}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="len<L>_<i>"):
        load_samples(tmp_path / "old.pt")


def test_end_of_training_samples_pt_is_the_format_from_samples_reads(tmp_path, monkeypatch):
    from contextlib import nullcontext
    from types import SimpleNamespace

    from flashipa_train.sampling.outputs import load_samples
    from flashipa_train.train import samples

    model, flow, _ = _tiny_parts()
    module = SimpleNamespace(model=model, flow=flow, device=torch.device("cpu"))
    monkeypatch.setattr(samples, "sampling_weights", lambda m: nullcontext())
    real_find_spec = samples.importlib.util.find_spec
    monkeypatch.setattr(
        samples.importlib.util, "find_spec", lambda name: None if name == "biotite" else real_find_spec(name)
    )
    (path,) = samples.write_final_samples(module, [9, 9, 12], num_steps=2, out_dir=tmp_path)
    assert path.name == "samples.pt"
    assert [(b.name, b.atoms.shape) for b in load_samples(path)] == [
        ("len9_0", (9, 4, 3)),
        ("len9_1", (9, 4, 3)),
        ("len12_0", (12, 4, 3)),
    ]
