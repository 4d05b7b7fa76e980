"""Memorisation check: train a small FlowModel on one chain until its samples reproduce that chain.

  train (torch only; runs on the GPU image):
    python scripts/memorise_chain.py train --example .device_cache/structures/examples/4zey_..._A_0.npz \
        --variant flash_ipa --seconds 300 --out OUT/memorise_flash_ipa
    -> OUT/.../samples.pt ({"len<L>_<i>": [L, 4, 3]}, the sampler's format), reference.pt, train.json
  score (biotite; here):
    python scripts/memorise_chain.py score OUT/memorise_flash_ipa [more folders] \
        --json docs/benchmarks/memorisation.json
    -> per folder: TM-score of every sample to the chain (same residues, aligned), helix fractions, pass/fail
Passes when the mean TM-score >= 0.8 and the mean helix fraction is within 0.1 of the chain's.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from plain_training import PlainTraining

TM_PASS = 0.8
HELIX_TOLERANCE = 0.1
SIZES = dict(
    c_s=128,
    c_hidden=32,
    num_blocks=4,
    num_heads=4,
    num_qk_points=4,
    num_v_points=8,
    seq_transformer_layers=1,
    seq_transformer_heads=4,
    knn=8,
)
OWN_SIZES = dict(c_z=64, pair_rank=2, c_pair_value=16)  # each variant takes those of its own fields


def variant_attention(variant, backend):
    """model.attention of `variant` as configs/model/attention/<variant>.yaml gives it, with `backend` and the
    OWN_SIZES it takes."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "configs" / "model" / "attention" / f"{variant}.yaml"
    attention = yaml.safe_load(path.read_text())
    return {**attention, **{key: value for key, value in OWN_SIZES.items() if key in attention}, "backend": backend}


def train(args):
    from flashipa_train.data.example_store import load_example
    from flashipa_train.flow import FlowMatcher
    from flashipa_train.model import FlowModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    example = load_example(args.example)
    atoms = torch.from_numpy(example["atoms"]).float()  # [L, 4, 3]
    atom_mask = torch.from_numpy(example["atom_mask"])  # [L, 4]
    L = atoms.shape[0]
    batch = {
        "atoms": atoms.expand(args.batch, L, 4, 3).to(device),
        "atom_mask": atom_mask.expand(args.batch, L, 4).to(device),
        "res_mask": atom_mask[:, :3].all(-1).expand(args.batch, L).to(device),
        "residue_index": torch.arange(L).expand(args.batch, L).to(device),
        "chain_index": torch.zeros(args.batch, L, dtype=torch.long, device=device),
        "all_real": bool(atom_mask[:, :3].all()),
    }
    attention = variant_attention(args.variant, args.backend)
    model = FlowModel(attention, **SIZES).to(device)
    flow = FlowMatcher(rot_exp_rate=args.rot_exp_rate)
    training = PlainTraining(
        model, flow, args.lr, args.warmup, 0.5 ** (1 / args.ema_half_life), args.seed, device, ema_warmup=True
    )
    started, losses = time.perf_counter(), []
    while time.perf_counter() - started < args.seconds and training.step < args.max_steps:
        step = training.step
        loss = training.train_step(batch)
        if step % 100 == 0:
            losses.append((step, float(loss.detach())))
    step = training.step
    train_seconds = time.perf_counter() - started
    training.load_ema()
    model.eval()
    generator = torch.Generator(device=device).manual_seed(args.seed)
    out = flow.sample(model, [L] * args.n, num_steps=args.num_steps, generator=generator)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({f"len{L}_{i}": out["atoms"][i].cpu() for i in range(args.n)}, folder / "samples.pt")
    torch.save({"atoms": atoms, "atom_mask": atom_mask}, folder / "reference.pt")
    record = dict(
        variant=args.variant,
        example=Path(args.example).name,
        length=L,
        steps=step,
        train_seconds=round(train_seconds, 1),
        final_loss=losses[-1][1] if losses else math.nan,
        losses=losses,
        device=str(device),
        sizes=SIZES,
        attention=attention,
        rot_exp_rate=args.rot_exp_rate,
    )
    (folder / "train.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "losses"}))


def score(args):
    from flashipa_train.metrics.secondary_structure import sse_fractions, sse_labels
    from flashipa_train.metrics.tm_score import tm_score

    rows = []
    for folder in map(Path, args.folders):
        record = json.loads((folder / "train.json").read_text())
        reference = torch.load(folder / "reference.pt")
        ref = reference["atoms"].numpy()
        samples = [s.numpy() for s in torch.load(folder / "samples.pt").values()]
        tms = [tm_score(ref, s, method="aligned") for s in samples]
        helix = [sse_fractions(sse_labels(s))["helix_fraction"] for s in samples]
        ref_helix = sse_fractions(sse_labels(ref))["helix_fraction"]
        row = dict(
            variant=record["variant"],
            example=record["example"],
            steps=record["steps"],
            train_seconds=record["train_seconds"],
            tm_mean=float(np.mean(tms)),
            tm_min=float(np.min(tms)),
            helix_mean=float(np.mean(helix)),
            helix_reference=ref_helix,
            n=len(samples),
        )
        row["passes"] = bool(row["tm_mean"] >= TM_PASS and abs(row["helix_mean"] - ref_helix) <= HELIX_TOLERANCE)
        rows.append(row)
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--example", required=True, help="a preprocessed example (.npz) from flashipa-preprocess")
    t.add_argument(
        "--variant", default="flash_ipa", help="a file name of configs/model/attention/ (its fields are used)"
    )
    t.add_argument("--backend", default="auto", help="attention backend (auto, triton, sdpa, torch)")
    t.add_argument("--seconds", type=float, default=300.0)
    t.add_argument("--max-steps", type=int, default=100_000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--ema-half-life", type=float, default=100.0)
    t.add_argument("--rot-exp-rate", type=float, default=10.0)
    t.add_argument("--n", type=int, default=8)
    t.add_argument("--num-steps", type=int, default=100)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    s = sub.add_parser("score")
    s.add_argument("folders", nargs="+")
    s.add_argument("--json")
    args = parser.parse_args()
    train(args) if args.command == "train" else score(args)


if __name__ == "__main__":
    main()
