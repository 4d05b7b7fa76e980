"""Parsing with biotite: formats agree, model 1 of ensembles, altloc and residue-id corner cases, frames."""

from pathlib import Path

import biotite.structure.io.pdb as pdb
import numpy as np
import pytest
import torch

from flashipa_train.data.chain_features import chain_backbone, increasing_residue_index, protein_chain_atoms
from flashipa_train.data.residue_constants import RESTYPES, aatype_from_residue_name
from flashipa_train.data.structure_reader import parse_structure

REPO = Path(__file__).resolve().parents[1]
SHARED_PDB = REPO.parent / "shared" / "pdb"
needs_shared = pytest.mark.skipif(not SHARED_PDB.is_dir(), reason=f"{SHARED_PDB} not present")


def backbones(path: Path) -> dict:
    parsed = parse_structure(str(path), path.read_bytes())
    return {chain: chain_backbone(chain, atoms) for chain, atoms in protein_chain_atoms(parsed.atoms)}


@needs_shared
@pytest.mark.parametrize("entry", ["1aki", "1f2n", "1igy", "5eil", "3o5r", "1l2y"])
def test_pdb_cif_and_bcif_of_one_entry_give_identical_backbones(entry):
    by_format = {suffix: backbones(SHARED_PDB / "biotite" / f"{entry}.{suffix}") for suffix in ("pdb", "cif", "bcif")}
    reference = by_format["pdb"]
    for suffix in ("cif", "bcif"):
        assert by_format[suffix].keys() == reference.keys(), suffix
        for chain, expected in reference.items():
            got = by_format[suffix][chain]
            np.testing.assert_array_equal(got.atom_mask, expected.atom_mask)
            assert np.abs(got.atoms - expected.atoms).max() <= 1e-3, (suffix, chain)
            np.testing.assert_array_equal(got.aatype, expected.aatype)
            np.testing.assert_array_equal(got.residue_number, expected.residue_number)
            np.testing.assert_array_equal(got.insertion_code, expected.insertion_code)


@needs_shared
def test_nmr_ensemble_yields_model_one():
    path = SHARED_PDB / "biotite" / "1l2y.pdb"
    parsed = parse_structure(str(path), path.read_bytes())
    assert parsed.model_count == 38 and parsed.method == "SOLUTION NMR"
    ((chain, atoms),) = protein_chain_atoms(parsed.atoms)
    ca = chain_backbone(chain, atoms).atoms[:, 1]
    pdb_file = pdb.PDBFile.read(str(path))
    for model, should_match in ((1, True), (2, False)):
        reference = pdb.get_structure(pdb_file, model=model)
        reference_ca = reference.coord[reference.atom_name == "CA"]
        assert np.allclose(ca, reference_ca, atol=1e-3) == should_match


@needs_shared
def test_altloc_with_another_residue_name_is_one_residue_of_the_most_occupied_kind():
    """edge_cases/altloc.cif: altlocs A, B (SER, occupancy 0.2 each) and C (PRO, 0.6) of residue 22."""
    (backbone,) = backbones(SHARED_PDB / "edge_cases" / "altloc.cif").values()
    assert backbone.length == 1
    assert RESTYPES[backbone.aatype[0]] == "P"
    assert backbone.residue_number.tolist() == [22] and backbone.atom_mask.all()
    np.testing.assert_allclose(backbone.atoms[0, 1], [6.035, 13.459, -2.622], atol=1e-3)


@needs_shared
def test_residue_ids_file_gives_three_protein_residues_and_drops_the_glycans():
    """edge_cases/res_ids.cif: SER 0, ASP 1, GLN 2 of chain A plus NAG/FUC sugars sharing label ids."""
    found = backbones(SHARED_PDB / "edge_cases" / "res_ids.cif")
    assert list(found) == ["A"]
    backbone = found["A"]
    assert backbone.residue_number.tolist() == [0, 1, 2]
    assert "".join(RESTYPES[a] for a in backbone.aatype) == "SDQ"
    assert backbone.atom_mask.all()


def test_modified_and_unknown_residues_map_to_parent_or_x():
    assert RESTYPES[aatype_from_residue_name("MSE")] == "M"
    assert RESTYPES[aatype_from_residue_name("SEP")] == "S"
    assert aatype_from_residue_name("UNK") == 20
    assert aatype_from_residue_name("ZZZ") == 20


def test_insertion_codes_and_restarts_give_strictly_increasing_residue_index():
    numbers = np.array([50, 51, 52, 52, 52, 53, 60, 1, 2])  # 52, 52A, 52B; gap to 60; restart at 1
    assert increasing_residue_index(numbers).tolist() == [0, 1, 2, 3, 4, 5, 12, 13, 14]


def test_insertion_codes_are_kept_in_file_order():
    """1igy (antibody) uses Kabat insertion codes such as 82A, 82B, 82C."""
    path = REPO / "data" / "1igy.cif.gz"
    backbone = backbones(path)["B"]
    with_code = np.flatnonzero(backbone.insertion_code != "")
    assert with_code.size > 0
    first = with_code[0]
    assert backbone.residue_number[first] == backbone.residue_number[first - 1]
    assert backbone.insertion_code[first] == "A"
    assert np.all(np.diff(backbone.residue_index) >= 1)


def test_frames_from_stored_backbone_reproduce_n_ca_c():
    geometry = pytest.importorskip("flashipa_train.geometry")
    backbone = backbones(REPO / "data" / "5ugo.cif.gz")["A"]
    keep = backbone.atom_mask[:, :3].all(axis=1)
    atoms = torch.from_numpy(backbone.atoms[keep]).double()  # [L, 4, 3]
    n, ca, c = atoms[:, 0], atoms[:, 1], atoms[:, 2]
    frames = geometry.frames_from_backbone(n, ca, c)
    local = frames.invert_apply(atoms[:, :3].transpose(0, 1))  # [3, L, 3]
    assert local[1].abs().max() < 1e-6  # CA at the origin
    assert local[2, :, 1:].abs().max() < 1e-6 and local[0, :, 2].abs().max() < 1e-6  # C on x, N in xy
    rebuilt = frames.apply(local)  # [3, L, 3]
    assert (rebuilt - atoms[:, :3].transpose(0, 1)).norm(dim=-1).max() <= 1e-3
    # Ideal geometry placed on these frames lies within a few hundredths of an Å of N and C.
    ideal = geometry.backbone_atoms_from_frames(frames)  # [L, 4, 3]
    deviation = (ideal[:, :3] - atoms[:, :3]).norm(dim=-1)  # [L, 3]
    assert deviation.mean() < 0.05


@needs_shared
@pytest.mark.parametrize("model", [1, 2, 18])
def test_nmr_mmcif_model_filter_matches_binary_cif(model):
    """Text mmCIF goes through the one-model line filter; BinaryCIF does not: both must agree."""
    text_path, binary_path = SHARED_PDB / "biotite" / "1gya.cif", SHARED_PDB / "biotite" / "1gya.bcif"
    text = parse_structure(str(text_path), text_path.read_bytes(), model=model)
    binary = parse_structure(str(binary_path), binary_path.read_bytes(), model=model)
    assert text.model_count == binary.model_count == 18
    assert text.atoms.array_length() == binary.atoms.array_length()
    assert np.abs(text.atoms.coord - binary.atoms.coord).max() <= 1e-3
    assert (text.atoms.atom_name == binary.atoms.atom_name).all()


def test_model_filter_leaves_unusual_layouts_alone():
    from flashipa_train.data.cif_model_filter import keep_one_model

    header = "data_x\nloop_\n_atom_site.id\n_atom_site.auth_atom_id\n_atom_site.pdbx_PDB_model_num\n"
    assert keep_one_model(header + "1 CA 1\n2 CA 2\n#\n", 2) == (header + "2 CA 2\n#\n", 2)
    assert keep_one_model(header + "1 'C A' 1\n2 CA 2\n#\n", 1) is None  # quoted value with a space
    assert keep_one_model(header + "1 CA 1\n2 CA 1\n#\n", 1) is None  # single model
