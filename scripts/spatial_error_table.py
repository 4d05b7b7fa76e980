"""Error of spatially sparse IPA against exact IPA attention, beside its a-priori bound (issue #20, item 2).

For each model (random init / CPU-trained quickstart), chain (real chains and assemblies of data/ and
../shared/pdb; compact synthetic assemblies up to L = 16384), flow time t and list setting (k, radius),
on block 0's IPA inputs (s0 and the input frames; blocks > 0 are in spatial_assumption.py):

  mass      mean / max over (query, head) of the true attention mass outside the lists, and its bound
  err       ||o~ - o|| / ||o|| of the attention output [v, v_pts - centre, pair_k] (list only), and the
            a-priori bound sqrt(sum_i b_i^2) / (||o~|| - sqrt(sum_i b_i^2)) (inf when the bound exceeds ||o~||)
  err_far   the same measured error with the far field (per-cell aggregated keys)

Exact attention is computed densely in query chunks (float64, O(L^2) time, O(L chunk) memory).

    PYTHONPATH=$PWD nice python scripts/spatial_error_table.py --ckpt /path/to/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spatial_chains as sc  # noqa: E402

from flashipa_kernels.spatial_ipa.error_bound import dropped_mass_bound, output_error_bound  # noqa: E402
from flashipa_kernels.spatial_ipa.far_field import cell_aggregates, far_field_attention, merge  # noqa: E402
from flashipa_kernels.spatial_ipa.ipa import spatial_operands  # noqa: E402
from flashipa_kernels.spatial_ipa.reference import neighbour_attention_reference  # noqa: E402
from flashipa_train.model.cell_list import spatial_neighbour_lists  # noqa: E402

SETTINGS = [dict(k=32, radius=1.2), dict(k=64, radius=1.6), dict(k=128, radius=2.0), dict(k=256, radius=2.5)]
WINDOW = 8
FAR_CELL = 1.0  # nm
BOUND_CELL = 1.0  # nm


@torch.no_grad()
def exact_attention(qs, ks, qp, kp, pw, v, chunk=256):
    """Dense IPA attention of one example (float64): o [T, H, DV], lse [T, H]."""
    qs, ks, qp, kp, pw, v = (x.double() for x in (qs, ks, qp, kp, pw, v))
    k_norm = kp.square().sum(-1)  # [T, H]
    outs, lses = [], []
    for s in range(0, qs.shape[0], chunk):
        q_norm = qp[s : s + chunk].square().sum(-1)
        d2 = q_norm[:, :, None] + k_norm.T[None] - 2 * torch.einsum("thd,jhd->thj", qp[s : s + chunk], kp)
        logits = torch.einsum("thd,jhd->thj", qs[s : s + chunk], ks) - 0.5 * pw[:, None] * d2.clamp(min=0)
        lse = torch.logsumexp(logits, -1)
        outs.append(torch.einsum("thj,jhd->thd", torch.exp(logits - lse[..., None]), v))
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def rel(a, b):
    return float((a.double() - b).norm() / b.norm())


def evaluate(rec: sc.BlockInputs, chain: sc.Chain, settings, far=True):
    L = chain.length
    res_mask = torch.ones(1, L, dtype=torch.bool)
    qs, ks, qp, kp, pw, vf, _ = spatial_operands(
        rec.q,
        rec.kv["k"],
        rec.kv["v"],
        rec.q_pts,
        rec.kv["k_pts"],
        rec.kv["v_pts"],
        rec.bias_q,
        rec.bias_k,
        rec.pair_k,
        rec.point_weights,
        res_mask,
    )
    o_exact, lse_exact = exact_attention(qs, ks, qp, kp, pw, vf)
    rows = []
    for st in settings:
        lists = spatial_neighbour_lists(
            rec.ca, res_mask, chain.residue_index[None], chain.chain_index[None], st["k"], WINDOW, st["radius"]
        )
        o, lse = neighbour_attention_reference(qs, ks, qp, kp, pw, vf, lists.index)
        mass = 1 - torch.exp(lse.double() - lse_exact)  # [T, H] true dropped mass
        mass_bound = dropped_mass_bound(qs, qp, pw, ks, kp, rec.ca, res_mask, lists.outside_radius, lse, BOUND_CELL)
        b = output_error_bound(mass_bound, o, vf, res_mask).norm()
        o_norm = o.double().norm()
        row = dict(
            st,
            list_len=float((lists.index >= 0).sum(-1).double().mean()),
            mass_mean=float(mass.mean()),
            mass_max=float(mass.max()),
            bound_mass_mean=float(mass_bound.mean()),
            bound_mass_max=float(mass_bound.max()),
            bound_holds=bool((mass_bound >= mass - 1e-9).all()),
            err=rel(o, o_exact),
            bound_err=float(b / (o_norm - b)) if b < o_norm else float("inf"),
        )
        if far:
            agg = cell_aggregates(ks, kp, vf, rec.ca, res_mask, FAR_CELL)
            o_far, lse_far = far_field_attention(
                qs, qp, pw, agg, rec.ca.reshape(-1, 3), lists.knn_radius, torch.zeros(L, dtype=torch.long)
            )
            o_m, _ = merge(o, lse, o_far, lse_far)
            row["err_far"] = rel(o_m, o_exact)
        rows.append(row)
    return rows


def write_markdown(data, path):
    """The error table: per model, t, real/synthetic and setting, the median over chains (max in brackets)."""
    rows = data["rows"]
    lines = [
        "# Spatially sparse IPA: measured error vs a-priori bound (CPU, float64 exact reference)",
        "",
        f"Block 0 of a FlowModel with quickstart sizes; lists = self + k nearest within the radius + window "
        f"+-{data['window']}; far field cells {data['far_cell_nm']} nm; bound cells {data['bound_cell_nm']} nm. "
        "mass: attention mass outside the lists (mean over query and head); err: ||o~ - o|| / ||o|| of "
        "[v, v_pts - centre, pair_k]. Median over chains, max over chains in brackets.",
        "",
        "| model | t | chains | n | k | radius nm | list len | dropped mass | mass bound | bound holds | err (list only) | err bound | err (+ far field) |",  # noqa: E501 (a Markdown table row)
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        for t in (1.0, 0.1):
            for synthetic in (False, True):
                for st in data["settings"]:
                    sel = [
                        r
                        for r in rows
                        if r["model"] == model and r["t"] == t and r["synthetic"] == synthetic and r["k"] == st["k"]
                    ]
                    if not sel:
                        continue

                    def med(key):
                        return sorted(r[key] for r in sel)[len(sel) // 2]

                    def mx(key):
                        return max(r[key] for r in sel)

                    kind = (
                        f"synthetic L {min(r['L'] for r in sel)}-{max(r['L'] for r in sel)}"
                        if synthetic
                        else f"real L {min(r['L'] for r in sel)}-{max(r['L'] for r in sel)}"
                    )
                    lines.append(
                        f"| {model} | {t} | {kind} | {len(sel)} | {st['k']} | {st['radius']} | {med('list_len'):.0f} | "
                        f"{med('mass_mean'):.3f} ({mx('mass_mean'):.3f}) | {med('bound_mass_mean'):.3f} ({mx('bound_mass_mean'):.3f}) | "  # noqa: E501 (a Markdown table row)
                        f"{all(r['bound_holds'] for r in sel)} | {med('err'):.3f} ({mx('err'):.3f}) | "
                        f"{med('bound_err'):.3g} | {med('err_far'):.3f} ({mx('err_far'):.3f}) |"
                    )
    big = [r for r in rows if r["L"] >= 16384]
    if big:
        lines += [
            "",
            "Largest synthetic assembly (one case each):",
            "",
            "| model | L | t | k | dropped mass | err (list only) | err (+ far field) |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | {r['L']} | {r['t']} | {r['k']} | {r['mass_mean']:.3f} | {r['err']:.3f} | {r['err_far']:.3f} |"  # noqa: E501 (a Markdown table row)
            for r in big
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", help="flashipa-train checkpoint (trained weights)")
    parser.add_argument("--trained-only", action="store_true", help="with --ckpt: leave out the random model")
    parser.add_argument("--synthetic-lengths", type=int, nargs="*", default=[1024, 4096, 16384])
    parser.add_argument("--max-real", type=int, default=2500)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md from an existing --out-json")
    parser.add_argument("--out-json", default=os.path.join(sc.ROOT, "docs", "benchmarks", "spatial_error.json"))
    args = parser.parse_args(argv)
    if args.markdown_only:
        with open(args.out_json) as f:
            write_markdown(json.load(f), args.out_json.removesuffix(".json") + ".md")
        return
    torch.set_num_threads(2)
    models = {} if args.trained_only and args.ckpt else {"random": sc.quickstart_model()}
    if args.ckpt:
        models["trained"] = sc.trained_model(args.ckpt)
    chains = [c for c in sc.all_chains() if c.length <= args.max_real]
    if args.limit:
        chains = chains[: args.limit]
    domain = max((c for c in chains if c.name.endswith("_A") and c.length < 300), key=lambda c: c.length)
    synthetic = [sc.compact_assembly(domain, n, torch.Generator().manual_seed(n)) for n in args.synthetic_lengths]
    rows = []
    for model_name, model in models.items():
        for chain in chains + synthetic:
            for t in (1.0, 0.1):
                if chain.length > 4096 and (t != 1.0 or model_name != "random"):
                    continue  # the largest: one case (float64 exact attention takes minutes on 2 cores)
                t0 = time.perf_counter()
                rec = sc.block0_inputs(model, sc.model_inputs(chain, t, torch.Generator().manual_seed(0)))
                for row in evaluate(rec, chain, SETTINGS):
                    rows.append(
                        dict(
                            model=model_name,
                            chain=chain.name,
                            L=chain.length,
                            t=t,
                            synthetic=chain.name.startswith("compact"),
                            **row,
                        )
                    )
                print(
                    f"{model_name} {chain.name} L={chain.length} t={t}: {time.perf_counter() - t0:.1f} s "
                    f"err k=32 {rows[-4]['err']:.3g} far {rows[-4]['err_far']:.3g} bound {rows[-4]['bound_err']:.3g}",
                    flush=True,
                )
                with open(args.out_json, "w") as f:
                    json.dump(
                        {
                            "settings": SETTINGS,
                            "window": WINDOW,
                            "far_cell_nm": FAR_CELL,
                            "bound_cell_nm": BOUND_CELL,
                            "torch": torch.__version__,
                            "device": "cpu (float64 exact reference)",
                            "ckpt": args.ckpt,
                            "rows": rows,
                        },
                        f,
                        indent=0,
                    )
    with open(args.out_json) as f:
        write_markdown(json.load(f), args.out_json.removesuffix(".json") + ".md")


if __name__ == "__main__":
    main()
