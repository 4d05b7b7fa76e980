"""Training specifications through the real config, model, flow objective and DataModule, at a tiny size on CPU:
one step per attention variant, kill-and-resume reproducibility, fine-tuning on another folder, the NaN guard."""

import csv
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from flashipa_train.checkpoint.weights import model_weights_from_checkpoint
from flashipa_train.config import compose_train_config
from flashipa_train.train import cli
from flashipa_train.train.cli import train

DATA = Path(__file__).resolve().parents[1] / "data"
FOLDER_A = ["3zee.cif.gz", "4zey.cif.gz", "1qys.pdb.gz", "2axd.bcif.gz"]  # 76-91 residue single chains
FOLDER_B = ["3u8v.cif.gz", "1YCR.pdb.gz"]

TINY_MODEL = [
    "model.c_s=32",
    "model.c_hidden=16",
    "model.num_blocks=2",
    "model.num_heads=2",
    "model.num_qk_points=2",
    "model.num_v_points=2",
    "model.seq_transformer_layers=1",
    "model.seq_transformer_heads=2",
    "model.knn=4",
]
TINY_RUN = [
    "trainer=cpu",
    "logger=csv",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "data.crop_length=24",
    "data.max_tokens_per_batch=48",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.preprocess.min_length=20",
    "data.val_fraction=0.25",
    "scheduler.warmup_steps=2",
    "sample.lengths=[]",
    "callbacks.validation_sampling=null",
]


def _folder(root: Path, names: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, root / name)
    return root


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    """Two small structure folders and one preprocessing cache shared by this module's tests."""
    base = tmp_path_factory.mktemp("structures")
    return {"a": _folder(base / "a", FOLDER_A), "b": _folder(base / "b", FOLDER_B), "cache": base / "cache"}


def _config(structures, out: Path, extra: list[str], folder: str = "a", model: list[str] = TINY_MODEL):
    overrides = model + TINY_RUN + [f"data.pdb_dir={structures[folder]}", f"data.cache_dir={structures['cache']}"]
    return compose_train_config(overrides + extra, output_dir=out)


def _logged(run_dir: Path, key: str = "train/loss") -> list[float]:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    return [float(r[key]) for r in rows if r.get(key)]


def _train_steps(run_dir: Path) -> list[int]:
    """The logger's step (x-axis) of every logged training loss."""
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    return [int(r["step"]) for r in rows if r.get("train/loss")]


@pytest.mark.parametrize(
    "attention, backend",
    [
        ("dense_ipa", None),
        ("flash_ipa", "torch"),
        ("flash_ipa", "sdpa"),
        ("flash_ipa", "triton"),
        ("inattention", "torch"),
    ],
)
def test_one_training_step_per_attention_variant_has_finite_loss_and_gradients(
    structures, tmp_path, attention, backend
):
    """On a CPU-only machine the triton backend runs the FlashIPA kernel under Triton's interpreter (conftest)."""
    extra = [f"model/attention={attention}"] + ([f"model.attention.backend={backend}"] if backend else [])
    cfg = _config(structures, tmp_path, extra)
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    flow = instantiate(cfg.flow)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    losses = flow.training_loss(model, batch, generator=torch.Generator().manual_seed(0))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


class KillAtEpoch(pl.Callback):
    """Simulates a killed job: raises when the given epoch starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterruptStandIn(f"killed at the start of epoch {self.epoch}")


class KeyboardInterruptStandIn(RuntimeError):
    """Raised by KillAtEpoch (Lightning turns a real KeyboardInterrupt into a graceful exit)."""


def test_a_killed_run_resumed_from_its_checkpoint_reproduces_the_uninterrupted_losses(structures, tmp_path):
    # checkpoints at each epoch end (the DataModule's batch order is a function of seed and epoch)
    epoch_checkpoints = [
        "trainer.check_val_every_n_epoch=1",
        "trainer.val_check_interval=1.0",
        "data.max_tokens_per_batch=24",
    ]
    datamodule = instantiate(_config(structures, tmp_path / "probe", epoch_checkpoints).data)
    datamodule.setup()
    steps_per_epoch = len(datamodule.train_dataloader())
    run = epoch_checkpoints + [f"trainer.max_steps={2 * steps_per_epoch}"]

    train(_config(structures, tmp_path / "straight", run))
    kill = ["+callbacks.kill._target_=test_train_pipeline.KillAtEpoch", "+callbacks.kill.epoch=1"]
    with pytest.raises(KeyboardInterruptStandIn):
        train(_config(structures, tmp_path / "killed", run + kill))
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == steps_per_epoch
    train(_config(structures, tmp_path / "resumed", run + [f"ckpt_path={last}"]))

    straight = _logged(tmp_path / "straight")
    killed = _logged(tmp_path / "killed")
    resumed = _logged(tmp_path / "resumed")
    assert steps_per_epoch >= 2
    assert len(straight) == 2 * steps_per_epoch and len(killed) == steps_per_epoch == len(resumed)
    assert killed == pytest.approx(straight[:steps_per_epoch], rel=1e-6, abs=1e-6)
    assert resumed == pytest.approx(straight[steps_per_epoch:], rel=1e-6, abs=1e-6)
    assert _train_steps(tmp_path / "resumed") == _train_steps(tmp_path / "straight")[steps_per_epoch:]
    # the final validation runs on the EMA weights: equal only if the EMA state was restored too
    assert _logged(tmp_path / "resumed", "val/loss")[-1] == pytest.approx(
        _logged(tmp_path / "straight", "val/loss")[-1], rel=1e-6
    )


class KillAtStep(pl.Callback):
    """Simulates a killed job: raises before the batch of the given optimizer step."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyboardInterruptStandIn(f"killed before step {self.step}")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_run_killed_mid_epoch_resumes_from_its_mid_epoch_checkpoint_with_the_uninterrupted_losses(
    structures, tmp_path, num_workers
):
    # 2 batches per epoch, a checkpoint every 3 steps: the one at step 3 is one batch into epoch 1
    run = [
        "trainer.val_check_interval=3",
        "data.max_tokens_per_batch=24",
        "trainer.max_steps=6",
        f"data.num_workers={num_workers}",
    ]
    datamodule = instantiate(_config(structures, tmp_path / "probe", run).data)
    datamodule.setup()
    assert len(datamodule.train_dataloader()) == 2

    train(_config(structures, tmp_path / "straight", run))
    kill = ["+callbacks.kill._target_=test_train_pipeline.KillAtStep", "+callbacks.kill.step=4"]
    with pytest.raises(KeyboardInterruptStandIn):
        train(_config(structures, tmp_path / "killed", run + kill))
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 3
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_served": 1}]
    train(_config(structures, tmp_path / "resumed", run + [f"ckpt_path={last}"]))

    straight = _logged(tmp_path / "straight")
    killed = _logged(tmp_path / "killed")
    resumed = _logged(tmp_path / "resumed")
    assert len(straight) == 6 and len(killed) == 4 and len(resumed) == 3
    assert killed == pytest.approx(straight[:4], rel=1e-6, abs=1e-6)
    assert resumed == pytest.approx(straight[3:], rel=1e-6, abs=1e-6)
    assert _train_steps(tmp_path / "resumed") == _train_steps(tmp_path / "straight")[3:]


def test_finetuning_builds_the_checkpoint_model_loads_its_weights_and_trains_on_another_folder(
    structures, tmp_path, monkeypatch
):
    short_run = ["trainer.max_steps=2", "trainer.val_check_interval=2"]
    pretrain = train(_config(structures, tmp_path / "pretrain", short_run))
    checkpoint = Path(pretrain["last_checkpoint"])
    finetune = [
        "experiment=finetune",
        f"init_from={checkpoint}",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "scheduler.warmup_steps=1",
    ]
    # no model overrides: the tiny architecture comes from the config stored in the checkpoint
    cfg = _config(structures, tmp_path / "finetune", finetune, folder="b", model=[])
    assert cfg.data.pdb_dir == str(structures["b"]) and cfg.init_from == str(checkpoint)
    loaded = {}

    def recording_load(model, path, **kwargs):
        real_load(model, path, **kwargs)
        loaded.update({k: v.clone() for k, v in model.state_dict().items()})

    real_load = cli.load_model_weights
    monkeypatch.setattr(cli, "load_model_weights", recording_load)
    result = train(cfg)
    assert torch.isfinite(torch.tensor(result["train/loss"]))
    assert any(p.name.startswith("b-") for p in structures["cache"].iterdir())  # folder b preprocessed and cached
    pretrained = model_weights_from_checkpoint(checkpoint)  # the EMA weights
    assert loaded.keys() == pretrained.keys() and all(torch.equal(loaded[k], pretrained[k]) for k in pretrained)
    finetuned = model_weights_from_checkpoint(result["last_checkpoint"])
    assert pretrained.keys() == finetuned.keys()
    assert all(pretrained[k].shape == finetuned[k].shape for k in pretrained)
    assert all(torch.isfinite(v).all() for v in finetuned.values())


def test_finetuning_a_model_of_another_shape_names_the_mismatched_field(structures, tmp_path):
    short_run = ["trainer.max_steps=1", "trainer.val_check_interval=1"]
    pretrain = train(_config(structures, tmp_path / "pretrain", short_run))
    wider = [o.replace("model.c_s=32", "model.c_s=48") for o in TINY_MODEL]
    cfg = _config(
        structures,
        tmp_path / "finetune",
        ["experiment=finetune", f"init_from={pretrain['last_checkpoint']}", "model_from_init=false"],
        folder="b",
        model=wider,
    )
    with pytest.raises(ValueError, match=r"another model than the checkpoint's: model.c_s=48 \(checkpoint: 32\)"):
        train(cfg)


class PoisonBatch(pl.Callback):
    """Writes a NaN into the batch's coordinates at the given step and records the batch's sources."""

    poisoned_sources: list[str] = []

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            batch["atoms"][0, 0, 1, 0] = float("nan")
            PoisonBatch.poisoned_sources = list(batch["source"])


def test_nonfinite_guard_names_the_batch_sources_and_skips_the_step(structures, tmp_path, caplog):
    poison = ["+callbacks.poison._target_=test_train_pipeline.PoisonBatch", "+callbacks.poison.step=1"]
    result = train(_config(structures, tmp_path, ["trainer.max_steps=3", "trainer.val_check_interval=3"] + poison))
    assert PoisonBatch.poisoned_sources
    warnings = [r.getMessage() for r in caplog.records if "NonFiniteGuard" in r.getMessage()]
    assert len(warnings) == 1 and all(source in warnings[0] for source in PoisonBatch.poisoned_sources)
    weights = torch.load(result["last_checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nonfinite_guard_stops_when_configured_to(structures, tmp_path):
    poison = ["+callbacks.poison._target_=test_train_pipeline.PoisonBatch", "+callbacks.poison.step=0"]
    cfg = _config(structures, tmp_path, ["trainer.max_steps=2", "callbacks.nonfinite_guard.action=stop"] + poison)
    with pytest.raises(FloatingPointError, match="batch sources") as error:
        train(cfg)
    assert all(source in str(error.value) for source in PoisonBatch.poisoned_sources)
