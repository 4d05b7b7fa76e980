"""A plain (non-editable) install ships the Hydra configs: the project is built into a wheel, installed into a
fresh virtualenv that sees this environment's packages (--no-deps: no network, no torch download), and both
Hydra commands run from a folder outside the source tree."""

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("setuptools.command.bdist_wheel") is None
        and importlib.util.find_spec("wheel") is None,
        reason="building a wheel offline needs setuptools >= 70.1 (or the wheel package) in this environment",
    ),
]


def _run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("install")
    source = tmp_path / "source"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "logs", "cache", "samples", "wandb", "__pycache__", "*.egg-info", "build", "docs", ".devwt"
        ),
    )
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ]
    )
    (wheel,) = (tmp_path / "dist").glob("flashipa_train-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    (purelib,) = venv.glob("lib/python*/site-packages")
    # this environment's packages (torch, Lightning, Hydra, ...) behind the venv's own: --system-site-packages
    # for a base interpreter or a virtualenv alike
    (purelib / "parent_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    return venv, wheel


def _outside_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROJECT_ROOT")}
    return dict(env, HOME=str(tmp_path))


def test_wheel_carries_every_yaml_of_the_configs_folder(venv):
    _, wheel = venv
    shipped = {
        name.removeprefix("flashipa_train/configs/")
        for name in zipfile.ZipFile(wheel).namelist()
        if name.startswith("flashipa_train/configs/") and name.endswith(".yaml")
    }
    assert shipped == {str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")}


def test_installed_commands_compose_their_configs_from_another_folder(venv, tmp_path):
    venv_dir, _ = venv
    env = _outside_env(tmp_path)
    where = _run(
        [str(venv_dir / "bin" / "python"), "-c", "import flashipa_train.config as c; print(c.CONFIG_DIR)"],
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert where.startswith(str(venv_dir)), where  # the installed copy, not the checkout
    job = _run([str(venv_dir / "bin" / "flashipa-train"), "--cfg", "job"], cwd=tmp_path, env=env).stdout
    assert "task_name: train" in job and "name: flash_ipa" in job
    help_page = _run([str(venv_dir / "bin" / "flashipa-sample"), "--help"], cwd=tmp_path, env=env).stdout
    assert "flashipa-sample ckpt_path=CKPT" in help_page and "model/attention" not in help_page
