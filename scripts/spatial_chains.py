"""Inputs of the spatial-sparsity studies: real chains, compact synthetic assemblies, and the IPA inputs
(s, frames, pair factors) that a FlowModel's trunk blocks actually see on them.

Used by scripts/spatial_assumption.py and scripts/spatial_error_table.py (CPU, biotite); never by the
GPU benchmark (no biotite on the device image).
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ../shared/pdb beside the project (a git worktree elsewhere may name the folder with FLASHIPA_SHARED_PDB)
SHARED_PDB = os.environ.get("FLASHIPA_SHARED_PDB", os.path.join(ROOT, "..", "shared", "pdb"))


@dataclass
class Chain:
    """One protein chain (or a whole assembly: all protein chains of an entry), backbone in Angstrom."""

    name: str
    atoms: torch.Tensor  # [L, 4, 3] N, CA, C, O
    chain_index: torch.Tensor  # [L] long
    residue_index: torch.Tensor  # [L] long

    @property
    def length(self) -> int:
        return self.atoms.shape[0]


def structure_files(folders=(os.path.join(ROOT, "data"), SHARED_PDB)):
    """One file per entry id from data/ and ../shared/pdb (absent folders skipped), data/ first."""
    from flashipa_train.data.structure_reader import entry_id_from_file_name, is_structure_file_name

    seen, files = set(), []
    for folder in folders:
        if not os.path.isdir(folder):
            print(f"{folder}: absent, skipped")
            continue
        for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
            if not is_structure_file_name(path):
                continue
            entry = entry_id_from_file_name(path)
            if entry not in seen:
                seen.add(entry)
                files.append(path)
    return files


def read_chains(path, min_length=20, assemblies=True):
    """The protein chains of one file with N, CA and C modelled (others dropped), plus the whole entry
    as one assembly when it has several chains. Unreadable files give no chains."""
    from flashipa_train.data.chain_features import chain_backbone, protein_chain_atoms
    from flashipa_train.data.structure_reader import parse_structure

    try:
        with open(path, "rb") as f:
            parsed = parse_structure(path, f.read())
        parts = [chain_backbone(cid, a) for cid, a in protein_chain_atoms(parsed.atoms)]
    except Exception as err:  # noqa: BLE001 - a study skips what the reader rejects
        print(f"{path}: skipped ({type(err).__name__}: {err})")
        return []
    chains = []
    for ci, bb in enumerate(parts):
        keep = bb.atom_mask[:, :3].all(-1)
        if keep.sum() < min_length:
            continue
        atoms = bb.atoms[keep].copy()
        atoms[~bb.atom_mask[keep][:, 3], 3] = atoms[~bb.atom_mask[keep][:, 3], 1]  # missing O: at CA
        chains.append(
            Chain(
                f"{parsed.entry_id}_{bb.chain_id}",
                torch.from_numpy(atoms),
                torch.full((int(keep.sum()),), ci),
                torch.from_numpy(bb.residue_index[keep]).long(),
            )
        )
    if assemblies and len(chains) > 1:
        chains.append(
            Chain(
                f"{parsed.entry_id}_all",
                torch.cat([c.atoms for c in chains]),
                torch.cat([c.chain_index for c in chains]),
                torch.cat([c.residue_index for c in chains]),
            )
        )
    return chains


def all_chains(min_length=20, assemblies=True, skip_folders=()):
    """Chains of data/ and ../shared/pdb, minus the entries found in `skip_folders` (already studied)."""
    from flashipa_train.data.structure_reader import entry_id_from_file_name

    skip = {entry_id_from_file_name(p) for p in structure_files(skip_folders)} if skip_folders else set()
    files = [p for p in structure_files() if entry_id_from_file_name(p) not in skip]
    return [c for path in files for c in read_chains(path, min_length, assemblies)]


def compact_assembly(domain: Chain, length: int, generator: torch.Generator) -> Chain:
    """A compact synthetic assembly of `length` residues: copies of a real domain, randomly rotated,
    on a cubic lattice whose spacing is the domain's diameter (protein-like density, real local
    geometry); the last copy is truncated to reach `length` exactly."""
    from flashipa_train.geometry import uniform_so3

    ca = domain.atoms[:, 1]
    centred = domain.atoms - ca.mean(0)
    spacing = 2 * float(ca.sub(ca.mean(0)).norm(dim=-1).quantile(0.9)) + 4.0
    copies = math.ceil(length / domain.length)
    side = math.ceil(copies ** (1 / 3))
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:copies]
    rots = uniform_so3((copies,), generator=generator)  # [n, 3, 3]
    # [n, L_d, 4, 3]
    atoms = torch.einsum("nij,laj->nlai", rots, centred) + spacing * grid[:, None, None].float()
    n = domain.length
    return Chain(
        f"compact_{domain.name}_x{copies}",
        atoms.reshape(-1, 4, 3)[:length],
        torch.arange(copies).repeat_interleave(n)[:length],
        domain.residue_index.repeat(copies)[:length],
    )


def model_inputs(chain: Chain, t: float, generator: torch.Generator | None = None, dtype=torch.float32) -> dict:
    """FlowModel inputs for one chain at flow time t (1: the data frames; < 1: interpolated towards noise)."""
    from flashipa_train.flow.interpolant import clean_frames, interpolate, sample_prior

    atoms = chain.atoms[None].to(dtype)
    res_mask = torch.ones(1, chain.length, dtype=torch.bool)
    rots_1, trans_1 = clean_frames(atoms, res_mask)
    tt = torch.tensor([t], dtype=dtype)
    if t < 1.0:
        rots_0, trans_0 = sample_prior(res_mask, 10.0, generator, dtype)
        rots_1, trans_1 = interpolate(rots_0, trans_0, rots_1, trans_1, tt, res_mask)
    return dict(
        trans_t=trans_1,
        rots_t=rots_1,
        t=tt,
        res_mask=res_mask,
        residue_index=chain.residue_index[None],
        chain_index=chain.chain_index[None],
    )


@dataclass
class BlockInputs:
    """What trunk block b's IPA sees: its per-residue features and weights."""

    block: int
    q: torch.Tensor  # [1, L, H, C]
    q_pts: torch.Tensor  # [1, L, H, P_q, 3] global, nm
    kv: dict  # k, v [1, L, H, C], k_pts [1, L, H, P_q, 3], v_pts [1, L, H, P_v, 3]
    bias_q: torch.Tensor  # [1, L, H, R_b]
    bias_k: torch.Tensor  # [1, L, H, R_b]
    pair_k: torch.Tensor  # [1, L, R, C_pv]
    point_weights: torch.Tensor  # [H]
    ca: torch.Tensor  # [1, L, 3] the block's frame translations, nm


@torch.no_grad()
def capture_block_inputs(model, inputs: dict) -> list[BlockInputs]:
    """Run a flash_ipa FlowModel once and record every block's IPA inputs (forward pre-hooks)."""
    records = []

    def hook(block):
        def record(module, args):
            s, rigids, factors = args[0], args[1], args[2]
            q, q_pts = module.queries(s, rigids)
            kv = module.keys_values(s, rigids)
            records.append(
                BlockInputs(
                    block,
                    q,
                    q_pts,
                    kv,
                    factors.bias_q,
                    factors.bias_k,
                    factors.pair_k,
                    module.point_weights(),
                    rigids.trans,
                )
            )

        return record

    handles = [ipa.register_forward_pre_hook(hook(b)) for b, ipa in enumerate(model.attention.ipa)]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    return records


def quickstart_model(seed=0, **overrides):
    """A randomly initialised FlowModel with the quickstart sizes (configs/experiment/quickstart.yaml)."""
    from flashipa_train.model import FlowModel

    torch.manual_seed(seed)
    sizes = dict(
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
    sizes.update(overrides)
    return FlowModel({"name": "flash_ipa", "backend": "torch", "c_pair_value": 16}, **sizes).eval()


def anchor_model(seed=0):
    """A randomly initialised FlowModel with the anchor sizes (configs/model/flow_model.yaml)."""
    from flashipa_train.model import FlowModel

    torch.manual_seed(seed)
    return FlowModel({"name": "flash_ipa", "backend": "torch"}).eval()


def trained_model(ckpt):
    from flashipa_train.sampling.checkpoint_model import load_sampler_from_checkpoint

    model = load_sampler_from_checkpoint(ckpt).model
    model.attention.backend = "torch"
    return model


@torch.no_grad()
def block0_inputs(model, inputs: dict) -> BlockInputs:
    """Block 0's IPA inputs without running the trunk (s0, pair factors, input frames): cheap at any L."""
    from flashipa_train.geometry import Rigid

    res_mask = inputs["res_mask"]
    rigids = Rigid(inputs["rots_t"], inputs["trans_t"] * 0.1)
    s0 = model.node_embedder(inputs["t"], inputs["residue_index"], inputs["chain_index"], res_mask)
    s0 = s0 + model.neighbour_features(
        inputs["trans_t"], None, inputs["residue_index"], inputs["chain_index"], res_mask
    )
    factors = model.attention.pair_factors(s0, inputs["residue_index"], inputs["chain_index"], res_mask)
    ipa = model.attention.ipa[0]
    q, q_pts = ipa.queries(s0, rigids)
    return BlockInputs(
        0,
        q,
        q_pts,
        ipa.keys_values(s0, rigids),
        factors.bias_q,
        factors.bias_k,
        factors.pair_k,
        ipa.point_weights(),
        rigids.trans,
    )
