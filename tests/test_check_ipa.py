"""The README's current main job: the reference IPA on real structures from data/."""

import os

from flashipa_train.check_ipa import main

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def test_check_ipa_on_real_structures_agrees_and_is_invariant(capsys):
    assert main([DATA, "--max-files", "2"]) == 0
    out = capsys.readouterr().out
    assert "checked 2 chains" in out and "OK" in out


def test_check_ipa_reports_a_corrupt_file_and_goes_on(tmp_path, capsys):
    bad = tmp_path / "broken.pdb"
    bad.write_bytes(b"\x00\x01garbage")
    assert main([str(bad), os.path.join(DATA, "1aki.pdb.gz")]) == 0
    out = capsys.readouterr().out
    assert "broken.pdb" in out and "skipped" in out
