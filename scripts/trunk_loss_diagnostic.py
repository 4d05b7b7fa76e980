"""Why does one trunk's loss sit above another's? Train variants on the same batches, compare loss terms by t.

Every variant starts from the same seed, sees the same training batches in the same order with the same
noise draws (one generator seed per step) and is scored on the same noise draws (EMA weights, half-life a tenth
of the run), per loss term and per bin of t. CPU, quickstart-size model by default:

    PYTHONPATH=$PWD python scripts/trunk_loss_diagnostic.py --data .device_cache/structures --steps 300 \
        --variants dense_ipa flash_ipa --json /tmp/diag.json

A variant is `name` or `name:key=value,key=value`: model.attention fields over configs/model/attention/<name>.yaml
(e.g. flash_ipa:edge_messages=false, flash_ipa:pair_rank=8), model sizes with `model.` in front
(flash_ipa:model.c_s=32).
dense_ipa takes `ablate=` one of DENSE_ABLATIONS: which part of its pair path carries the advantage
(no_distances: no RBF of x_t / x_sc in z; no_edge_transition: z fixed after the first block; no_pair_bias,
no_pair_values: that half of IPA's pair use).
"""

import argparse
import contextlib
import json
import time
from pathlib import Path
from unittest import mock

import torch
import yaml
from plain_training import PlainTraining

QUICKSTART = dict(
    c_s=64,
    c_hidden=32,
    num_blocks=2,
    num_heads=4,
    num_qk_points=4,
    num_v_points=4,
    seq_transformer_layers=1,
    seq_transformer_heads=4,
    knn=8,
)
QUICKSTART_OWN = dict(c_z=32, pair_rank=2, c_pair_value=16)  # each variant takes those of its own fields
T_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
TERMS = ("loss", "trans_loss", "rot_loss", "atom_loss", "local_dist_loss")


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def _dense_attention_without(part):
    from flashipa_kernels.reference import dense_ipa_attention

    def attention(q, k, v, q_pts, k_pts, v_pts, pair_bias, pair_values, point_weights, mask):
        if part == "bias":
            pair_bias = torch.zeros_like(pair_bias)
        o, o_pts, o_pair = dense_ipa_attention(
            q, k, v, q_pts, k_pts, v_pts, pair_bias, pair_values, point_weights, mask
        )
        return o, o_pts, torch.zeros_like(o_pair) if part == "values" else o_pair

    return attention


DENSE_ABLATIONS = {
    "no_distances": lambda: mock.patch(
        "flashipa_train.model.pair_dense.radial_basis", lambda d, *args: d.new_zeros(*d.shape, args[-1])
    ),
    "no_edge_transition": lambda: mock.patch(
        "flashipa_train.model.attention_dense.DenseIPAAttention.after_block",
        lambda self, block, s, res_mask, state: state,
    ),
    "no_pair_bias": lambda: mock.patch(
        "flashipa_train.model.ipa.dense_ipa_attention", _dense_attention_without("bias")
    ),
    "no_pair_values": lambda: mock.patch(
        "flashipa_train.model.ipa.dense_ipa_attention", _dense_attention_without("values")
    ),
}


def parse_variant(spec):
    """'flash_ipa:edge_messages=false,model.c_s=32' -> (attention dict, model overrides); the attention
    starts from configs/model/attention/<name>.yaml with the QUICKSTART_OWN sizes it takes, backend torch."""
    name, _, rest = spec.partition(":")
    path = Path(__file__).resolve().parents[1] / "configs" / "model" / "attention" / f"{name}.yaml"
    attention = yaml.safe_load(path.read_text())
    own = {key: value for key, value in QUICKSTART_OWN.items() if key in attention}
    attention, sizes = {**attention, **own, "backend": "torch"}, {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=")
        (sizes if key.startswith("model.") else attention)[key.removeprefix("model.")] = _value(value)
    return attention, sizes


def batches(data_dir, crop_length, max_tokens, seed):
    from flashipa_train.data.datamodule import BackboneDataModule

    dm = BackboneDataModule(
        data_dir=data_dir,
        crop_length=crop_length,
        max_tokens_per_batch=max_tokens,
        num_workers=0,
        pin_memory=False,
        seed=seed,
    )
    dm.setup("fit")
    return dm


def single_examples(dm, dataset):
    """Centred crops of every chain of `dataset`, one example per batch (so each noise draw has its own t)."""
    examples = []
    for batch in dm._loader(dataset, training=False):
        for i in range(batch["atoms"].shape[0]):
            examples.append({k: v[i : i + 1] for k, v in batch.items() if torch.is_tensor(v)})
    return examples


def evaluate(model, flow, examples, draws):
    """Mean loss terms over examples x draws (fixed generators), overall and per bin of t."""
    bins = len(T_BINS) - 1
    sums, counts = [[0.0] * len(TERMS) for _ in range(bins)], [0] * bins
    model.eval()
    with torch.no_grad():
        for i, batch in enumerate(examples):
            for d in range(draws):
                g = torch.Generator().manual_seed(2**40 + i * draws + d)
                out = flow.training_loss(model, batch, generator=g)
                b = min(int(float(out["t_mean"]) * bins), bins - 1)
                sums[b] = [acc + float(out[term]) for acc, term in zip(sums[b], TERMS)]
                counts[b] += 1
    model.train()
    n = max(sum(counts), 1)
    result = {"all": {term: sum(sums[b][j] for b in range(bins)) / n for j, term in enumerate(TERMS)}}
    for b in range(bins):
        result[f"t{T_BINS[b]:.2f}-{T_BINS[b + 1]:.2f}"] = {
            term: sums[b][j] / max(counts[b], 1) for j, term in enumerate(TERMS)
        }
    return result


def run_variant(spec, args, dm):
    attention, sizes = parse_variant(spec)
    ablation = attention.pop("ablate", None)
    with DENSE_ABLATIONS[ablation]() if ablation else contextlib.nullcontext():
        return _train_and_score(spec, attention, sizes, args, dm)


def _train_and_score(spec, attention, sizes, args, dm):
    from flashipa_train.flow import FlowMatcher
    from flashipa_train.model import FlowModel

    torch.manual_seed(args.seed)
    model = FlowModel(attention, **(QUICKSTART | sizes))
    flow = FlowMatcher()
    ema_decay = 0.5 ** (1 / max(1, args.steps // 10))  # half-life: a tenth of the run
    training = PlainTraining(model, flow, args.lr, max(1, args.steps // 20), ema_decay, args.seed)
    val_examples, train_examples = single_examples(dm, dm.val_dataset), single_examples(dm, dm.train_dataset)
    history, started = [], time.perf_counter()
    while training.step < args.steps:
        for batch in dm.train_dataloader():
            if training.step >= args.steps:
                break
            training.train_step(batch)
            step = training.step
            if step % args.eval_every == 0 or step == args.steps:
                history.append({"step": step, "train": evaluate(model, flow, train_examples, 2)["all"]})
                print(spec, step, {k: round(v, 3) for k, v in history[-1]["train"].items()}, flush=True)
    training.load_ema()  # score the EMA weights: a single step's weights swing with the last batches
    final = {
        "val": evaluate(model, flow, val_examples, args.draws),
        "train": evaluate(model, flow, train_examples, args.draws),
    }
    return {
        "variant": spec,
        "steps": training.step,
        "seconds": time.perf_counter() - started,
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
        "final": final,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="preprocessed directory (flashipa-preprocess)")
    parser.add_argument("--variants", nargs="+", default=["dense_ipa", "flash_ipa"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--draws", type=int, default=32, help="noise draws per chain in the final evaluation")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--crop-length", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dm = batches(args.data, args.crop_length, args.max_tokens, args.seed)
    results = [run_variant(spec, args, dm) for spec in args.variants]
    for r in results:
        for split, by_bin in r["final"].items():
            print(
                r["variant"],
                r["steps"],
                f"{r['seconds']:.0f}s",
                split,
                " ".join(
                    f"{b}:{d['loss']:.3f}(tr {d['trans_loss']:.3f} rot {d['rot_loss']:.3f})" for b, d in by_bin.items()
                ),
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
