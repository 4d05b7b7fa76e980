"""`flashipa-sample`: the Hydra entry point (configs/sample.yaml). Loads a flashipa-train checkpoint, samples
`n` backbones of every length with Euler integration, writes PDB and mmCIF files, metrics.csv and
summary.csv, and prints the summary (next to a training set's metrics when `training_set` is given)."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from flashipa_train.config import CONFIG_DIR
from flashipa_train.sampling.checkpoint_model import load_sampler_from_checkpoint
from flashipa_train.sampling.generate import GeneratedBackbone, generate_backbones, pick_device
from flashipa_train.sampling.outputs import (
    SAMPLES_FILE,
    format_summary_table,
    load_samples,
    sample_metric_rows,
    save_samples,
    summary_by_length,
    write_rows_csv,
    write_structure_files,
)

log = logging.getLogger(__name__)

NEEDS_INPUT = (
    "flashipa-sample: pass ckpt_path=CKPT (a flashipa-train checkpoint, e.g. "
    "logs/quickstart/runs/<date_time>/checkpoints/last.ckpt) or from_samples=samples.pt; "
    "flashipa-sample --help lists the options"
)


def sample(cfg: DictConfig) -> dict:
    """Run one sampling job described by `cfg` (a composed `sample.yaml`). Returns {"out": folder,
    "files": written structure paths, "rows": per-sample metric rows, "summaries": per-length summaries}.
    With `from_samples` it samples nothing: the backbones come from an earlier run's samples.pt."""
    if not cfg.get("ckpt_path") and not cfg.get("from_samples"):
        raise SystemExit(NEEDS_INPUT)
    _prepare_out_folder(Path(cfg.out), bool(cfg.get("overwrite", False)))
    if cfg.get("from_samples"):
        backbones = load_samples(cfg.from_samples)
        log.info("Backbones from %s: %d chains, no sampling", cfg.from_samples, len(backbones))
        return write_outputs(cfg, backbones, f"read from {cfg.from_samples}")
    lengths = [int(L) for L in cfg.lengths]
    device = pick_device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    fp8 = bool(cfg.get("model", {}).get("attention", {}).get("fp8_sampling", False))
    sampler = load_sampler_from_checkpoint(
        cfg.ckpt_path,
        device=device,
        prefer_ema=bool(cfg.use_ema),
        allow_remote=bool(cfg.get("allow_remote_checkpoints", False)),
        attention_overrides={"fp8_sampling": True} if fp8 else None,
    )
    log.info("Sampling %d x %s residues on %s from %s", cfg.n, lengths, device, cfg.ckpt_path)
    started = time.perf_counter()
    backbones = generate_backbones(
        sampler.model,
        sampler.flow,
        lengths,
        int(cfg.n),
        num_steps=int(cfg.num_steps),
        batch_size=int(cfg.batch_size),
        seed=int(cfg.seed),
        progress=bool(cfg.progress),
    )
    seconds = time.perf_counter() - started
    if importlib.util.find_spec("biotite") is None:
        return _save_tensors_without_biotite(backbones, Path(cfg.out), seconds, device)
    how = f"in {seconds:.1f} s on {device} ({cfg.num_steps} Euler steps, {'EMA' if cfg.use_ema else 'raw'} weights)"
    return write_outputs(cfg, backbones, how)


# what flashipa-sample writes into `out` (Hydra adds .hydra/ and its log there before the job starts)
_OUTPUT_PATTERNS = ("*.pdb", "cif/*.cif", "metrics.csv", "summary.csv", "training_set_metrics.csv")
_HYDRA_ENTRIES = (".hydra", "flashipa-sample.log")


def _prepare_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse an `out` folder that already holds files (an earlier sample folder would mix old and new
    structures and lose its metrics) unless `overwrite`; then the earlier outputs are removed first."""
    if not out.is_dir():
        if out.exists():
            raise ValueError(f"out={out} is a file; pass a folder for the samples.")
        return
    earlier = [p for p in out.iterdir() if p.name not in _HYDRA_ENTRIES]
    if earlier and not overwrite:
        raise ValueError(
            f"out={out} already holds {len(earlier)} entries (e.g. {earlier[0].name}); pass an empty or new folder, "
            "or overwrite=true to replace its earlier samples."
        )
    for pattern in _OUTPUT_PATTERNS:
        for path in out.glob(pattern):
            path.unlink()


def write_outputs(cfg: DictConfig, backbones: list[GeneratedBackbone], how: str) -> dict:
    """Structure files, metrics.csv and summary.csv of `backbones` under cfg.out (needs biotite)."""
    out = Path(cfg.out)
    files = write_structure_files(backbones, out, formats=tuple(cfg.formats))

    reference = cfg.training_set if cfg.get("novelty") and cfg.get("training_set") else None
    if reference is not None:
        from flashipa_train.metrics import iter_backbones

        reference = iter_backbones(str(reference), cfg.get("training_set_max"))
    rows = sample_metric_rows(backbones, reference_set=reference)
    write_rows_csv(rows, out / "metrics.csv")
    summaries = summary_by_length(rows, backbones, cfg.get("diversity"))
    if cfg.get("training_set"):
        from flashipa_train.metrics import metrics_of_training_set, summarize

        training_rows = metrics_of_training_set(str(cfg.training_set), cfg.get("training_set_max"))
        write_rows_csv(training_rows, out / "training_set_metrics.csv")
        summaries["training"] = summarize(training_rows)
    write_rows_csv([{"set": name, **s} for name, s in summaries.items()], out / "summary.csv", first_column="set")
    print(
        f"\nflashipa-sample: {len(backbones)} backbones {how} -> {out}\n"
        f"  files: <name>.pdb, cif/<name>.cif; metrics: {out / 'metrics.csv'}, {out / 'summary.csv'}\n\n"
        f"{format_summary_table(summaries)}",
        flush=True,
    )
    return {"out": out, "files": files, "rows": rows, "summaries": summaries}


def _save_tensors_without_biotite(backbones, out: Path, seconds: float, device) -> dict:
    """Without biotite (e.g. a GPU image) keep the samples as `out/samples.pt` ({name: [L, 4, 3] tensor});
    structure files and metrics can be made from it later where biotite is installed."""
    path = save_samples(backbones, out / SAMPLES_FILE)
    print(
        f"\nflashipa-sample: {len(backbones)} backbones in {seconds:.1f} s on {device} -> {path}\n"
        "  biotite is not installed: no PDB/mmCIF files and no metrics; where it is, make them with\n"
        f"  flashipa-sample from_samples={path} out=DIR [training_set=data]",
        flush=True,
    )
    return {"out": out, "files": [path], "rows": [], "summaries": {}}


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="sample")
def _hydra_main(cfg: DictConfig) -> None:
    sample(cfg)


def main() -> None:
    """Console entry point `flashipa-sample` (`--help` lists its options). Without a checkpoint or a
    samples.pt among the arguments it stops with one line saying what to pass, before Hydra makes a folder."""
    arguments = sys.argv[1:]
    names = {a.split("=", 1)[0].lstrip("+~") for a in arguments if "=" in a}
    if not any(a.startswith("-") for a in arguments) and not names & {"ckpt_path", "from_samples"}:
        sys.exit(NEEDS_INPUT)
    _hydra_main()


if __name__ == "__main__":
    main()
