"""Reliability and security of checkpoints, at a tiny size on CPU: last.ckpt is the last, checkpoints are data
(crafted ones are refused without running anything), non-finite states are never saved, and bad config values
fail at startup with one line naming the field."""

import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from test_train_pipeline import FOLDER_A, TINY_MODEL, _config, _folder, _train_steps

from flashipa_train.checkpoint.weights import CheckpointError
from flashipa_train.train.cli import train
from flashipa_train.train.config_checks import ConfigError

pytest.importorskip("biotite")

SHORT = ["data.max_tokens_per_batch=24"]


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    base = tmp_path_factory.mktemp("structures")
    return {"a": _folder(base / "a", FOLDER_A), "one": _folder(base / "one", FOLDER_A[1:2]), "cache": base / "cache"}


@pytest.fixture(scope="module")
def trained(structures, tmp_path_factory):
    """One 2-step run: its last.ckpt is a genuine checkpoint to craft from."""
    out = tmp_path_factory.mktemp("trained")
    result = train(_config(structures, out, SHORT + ["trainer.max_steps=2", "trainer.val_check_interval=2"]))
    return Path(result["last_checkpoint"])


class _ValLossEdit(pl.Callback):
    """Wraps the flow objective during validation so the logged val/loss is `edit(loss, global_step)`."""

    def edit(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError

    def on_validation_start(self, trainer, pl_module):
        real, step = type(pl_module.flow).training_loss.__get__(pl_module.flow), trainer.global_step

        def edited(*args, **kwargs):
            losses = real(*args, **kwargs)
            return {**losses, "loss": self.edit(losses["loss"], step)}

        pl_module.flow.training_loss = edited

    def on_validation_end(self, trainer, pl_module):
        del pl_module.flow.training_loss


class RisingValLoss(_ValLossEdit):
    """val/loss grows with the step: every validation after the first is worse than the best."""

    def edit(self, loss, step):
        return loss + 1000.0 * step


class NaNValLoss(_ValLossEdit):
    """val/loss is NaN at the given step."""

    def __init__(self, step: int):
        self.step = step

    def edit(self, loss, step):
        return loss * float("nan") if step == self.step else loss


def test_last_checkpoint_follows_non_improving_validations_and_the_end_of_fit(structures, tmp_path):
    rising = ["+callbacks.rising._target_=test_reliability_checkpoints.RisingValLoss"]
    run = SHORT + ["trainer.val_check_interval=2"] + rising
    result = train(_config(structures, tmp_path / "first", run + ["trainer.max_steps=7"]))
    last, best = Path(result["last_checkpoint"]), Path(result["best_checkpoint"])
    # validations at 2, 4, 6 never improve on 2; the fit ends at 7, between validations
    assert torch.load(last, weights_only=True)["global_step"] == 7
    assert torch.load(best, weights_only=True)["global_step"] == 2 and best.name == "step_0000002.ckpt"

    resumed = train(_config(structures, tmp_path / "resumed", run + ["trainer.max_steps=9", f"ckpt_path={last}"]))
    assert _train_steps(tmp_path / "resumed") == [7, 8]
    # the resumed run keeps writing into the first run's folder: one best and one last for the whole run
    assert Path(resumed["last_checkpoint"]) == last
    assert torch.load(last, weights_only=True)["global_step"] == 9
    assert Path(resumed["best_checkpoint"]) == best and best.is_file()


def test_a_nan_validation_loss_is_never_saved_as_best_or_last(structures, tmp_path):
    nan = ["+callbacks.nan._target_=test_reliability_checkpoints.NaNValLoss", "+callbacks.nan.step=2"]
    result = train(_config(structures, tmp_path, SHORT + ["trainer.max_steps=4", "trainer.val_check_interval=2"] + nan))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "step_0000004.ckpt"]
    assert Path(result["best_checkpoint"]).name == "step_0000004.ckpt"


def test_a_learning_rate_that_ruins_the_weights_stops_naming_the_step_and_the_rate(structures, tmp_path):
    run = SHORT + [
        "optimizer.lr=1e6",
        "scheduler.warmup_steps=0",
        "trainer.max_steps=8",
        "trainer.val_check_interval=2",
    ]
    with pytest.raises(
        FloatingPointError,
        match=r"the last finite loss was \S+ at step \d+ \(learning rate [\d.e+-]+\).*lower optimizer.lr",
    ):
        train(_config(structures, tmp_path, run))
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):  # any checkpoint written holds finite weights
        checkpoint = torch.load(path, weights_only=True)
        assert all(torch.isfinite(w).all() for w in checkpoint["state_dict"].values()), path


# Crafted checkpoints


class WritesAFile:
    """A pickle payload: unpickling it (weights_only=False) would write `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def _with_run_config(trained: Path, dest: Path, **model_changes) -> Path:
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["run_config"]["model"].update(model_changes)
    torch.save(checkpoint, dest)
    return dest


def test_a_stored_model_config_with_a_file_writing_target_is_refused_by_sampling_and_finetuning(
    structures, trained, tmp_path
):
    from flashipa_train.sampling import load_sampler_from_checkpoint

    marker = tmp_path / "written_by_checkpoint.txt"
    evil = _with_run_config(
        trained, tmp_path / "evil.ckpt", _target_="pathlib.Path.write_text", _args_=[str(marker), "pwned"]
    )
    with pytest.raises(
        CheckpointError, match=r"_target_='pathlib.Path.write_text'; only flashipa_train.model.FlowModel"
    ):
        load_sampler_from_checkpoint(evil)
    finetune = ["experiment=finetune", f"init_from={evil}", "trainer.max_steps=1"]
    with pytest.raises(CheckpointError, match="_target_"):
        train(_config(structures, tmp_path / "finetune", finetune, model=[]))
    nested = _with_run_config(
        trained, tmp_path / "nested.ckpt", knn={"_target_": "pathlib.Path.write_text", "self": str(marker), "data": "x"}
    )
    with pytest.raises(CheckpointError, match=r"run_config.model.knn is dict"):
        load_sampler_from_checkpoint(nested)
    assert not marker.exists()


@pytest.mark.parametrize("field", ["ckpt_path", "init_from", "sample"])
def test_a_pickle_payload_is_refused_wherever_a_checkpoint_is_read(structures, trained, tmp_path, field):
    from flashipa_train.sampling import load_sampler_from_checkpoint

    marker = tmp_path / "written_by_pickle.txt"
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["payload"] = WritesAFile(marker)
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"refused: the file asks to load code \(getattr\)"):
        if field == "sample":
            load_sampler_from_checkpoint(tmp_path / "evil.ckpt")
        else:
            train(_config(structures, tmp_path / "run", SHORT + [f"{field}={tmp_path / 'evil.ckpt'}"]))
    assert not marker.exists()


def test_a_checkpoint_url_is_refused_unless_allowed_and_then_still_read_as_data(structures, trained, tmp_path):
    marker = tmp_path / "written_by_url.txt"
    checkpoint = torch.load(trained, weights_only=True)
    checkpoint["payload"] = WritesAFile(marker)
    served = tmp_path / "served"
    served.mkdir()
    name = f"evil-{os.getpid()}-{time.time_ns()}.ckpt"  # torch.hub caches downloads by file name
    torch.save(checkpoint, served / name)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    try:
        with pytest.raises(CheckpointError, match="remote checkpoints are refused"):
            train(_config(structures, tmp_path / "run", SHORT + [f"ckpt_path={url}"]))
        assert not requests  # refused before any download
        with pytest.raises(CheckpointError, match="asks to load code"):
            train(_config(structures, tmp_path / "run2", SHORT + [f"ckpt_path={url}", "allow_remote_checkpoints=true"]))
        assert requests
    finally:
        server.shutdown()
        (Path(torch.hub.get_dir()) / "checkpoints" / name).unlink(missing_ok=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(range(256)) * 8, "not a PyTorch checkpoint"),  # fixed bytes: urandom made the test id and outcome vary
        ("tensor", "holds a Tensor, not a checkpoint dict"),
        (b"", "not a readable PyTorch checkpoint"),
    ],
)
@pytest.mark.parametrize("field", ["ckpt_path", "init_from"])
def test_a_file_that_is_not_a_checkpoint_gets_one_line_naming_the_field(structures, tmp_path, content, message, field):
    path = tmp_path / "bad.ckpt"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{field}={path}: {message}") as error:
        train(_config(structures, tmp_path / "run", SHORT + [f"{field}={path}"]))
    assert "\n" not in str(error.value)


def test_a_checkpoint_of_another_attention_variant_names_both(structures, trained, tmp_path):
    with pytest.raises(
        CheckpointError, match="this checkpoint is flash_ipa, the config is dense_ipa; add model/attention=flash_ipa"
    ):
        train(_config(structures, tmp_path, SHORT + ["model/attention=dense_ipa", f"ckpt_path={trained}"]))
    with pytest.raises(CheckpointError, match=r"model.c_s=48 \(checkpoint: 32\)"):
        wider = [o.replace("model.c_s=32", "model.c_s=48") for o in TINY_MODEL]
        train(_config(structures, tmp_path, SHORT + [f"init_from={trained}"], model=wider))


# Config values checked at startup


@pytest.mark.parametrize(
    "override, field",
    [
        ("data.crop_length=0", "data.crop_length=0"),
        ("data.crop_length=-4", "data.crop_length=-4"),
        ("data.max_batch_size=0", "data.max_batch_size=0"),
        ("data.max_batch_size=-1", "data.max_batch_size=-1"),
        ("trainer.max_steps=-1", "trainer.max_steps=-1 with trainer.max_epochs=-1"),
        ("trainer.max_steps=0", "trainer.max_steps=0"),
        ("sample.lengths=[0]", r"sample.lengths=\[0\]"),
        ("compile=autoo", "compile='autoo'"),
    ],
)
def test_bad_config_values_fail_at_startup_naming_the_field(structures, tmp_path, override, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        train(_config(structures, tmp_path, [override]))
    assert not (structures["cache"] / "never").exists()


def test_an_unwritable_checkpoint_folder_fails_at_startup(structures, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(
        ConfigError, match=r"callbacks.model_checkpoint.dirpath=.*a_file/checkpoints: cannot write there"
    ):
        train(_config(structures, tmp_path / "run", [f"callbacks.model_checkpoint.dirpath={blocker / 'checkpoints'}"]))


def test_a_single_structure_says_there_is_nothing_to_validate_on(structures, tmp_path):
    from flashipa_train.data.example_store import PreprocessedDirError

    with pytest.raises(PreprocessedDirError, match="none can be held out for validation"):
        train(_config(structures, tmp_path, ["trainer.max_steps=1"], folder="one"))


def test_the_train_command_prints_one_line_for_a_bad_value(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run(
        [sys.executable, "-m", "flashipa_train.train.cli", "data.crop_length=0", f"paths.log_dir={tmp_path}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("flashipa-train: error: data.crop_length=0: give a whole")
    assert "Traceback" not in done.stderr


def test_stored_config_schema_accepts_the_project_model_only():
    from flashipa_train.checkpoint.stored_config import checked_model_config

    good = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "configs/model/flow_model.yaml"))
    good.pop("defaults")
    good["attention"] = {"name": "flash_ipa", "backend": "auto"}
    assert checked_model_config(good, "x")["c_s"] == 256
    for bad in (
        {"_partial_": True},
        {"c_s": "${oc.env:HOME}"},
        {"attention": {"name": "flash_ipa", "_target_": "os.system"}},
        {"unknown_field": 1},
    ):
        with pytest.raises(CheckpointError):
            checked_model_config({**good, **bad}, "x")


# flashipa-sample


def _sample_config(trained: Path, out: Path, *extra: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        return compose(
            "sample",
            [
                f"ckpt_path={trained}",
                f"out={out}",
                "n=1",
                "num_steps=2",
                "device=cpu",
                "progress=false",
                "diversity=null",
                "formats=[pdb]",
                *extra,
            ],
        )


def test_sampling_refuses_a_non_empty_out_unless_overwrite_which_replaces_the_old_samples(trained, tmp_path):
    from flashipa_train.sampling.cli import sample

    out = tmp_path / "samples"
    sample(_sample_config(trained, out, "lengths=[8]"))
    with pytest.raises(ValueError, match=r"already holds .* entries .* or overwrite=true"):
        sample(_sample_config(trained, out, "lengths=[9]"))
    sample(_sample_config(trained, out, "lengths=[9]", "overwrite=true"))
    assert sorted(p.name for p in out.glob("*.pdb")) == ["len9_0.pdb"]


def test_long_chain_sampling_shows_a_progress_bar_per_euler_step(trained, capsys):
    from flashipa_train.sampling import generate_backbones, load_sampler_from_checkpoint

    sampler = load_sampler_from_checkpoint(trained)
    with torch.no_grad():
        generate_backbones(sampler.model, sampler.flow, [40], 1, num_steps=4, progress=True)
    assert "5/5" in capsys.readouterr().err  # num_steps + 1 model calls, with tqdm's rate and time left
