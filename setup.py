"""Packages, and the Hydra configs as package data: configs/ stays at the top of the repository (the
lightning-hydra-template layout), and wheels carry it as flashipa_train/configs so that flashipa-train and
flashipa-sample work from any folder after a plain `pip install .`. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["flashipa_train*", "kernels*"]) + ["flashipa_train.configs"],
    package_dir={"flashipa_train.configs": "configs"},
    package_data={"flashipa_train.configs": ["**/*.yaml"]},
)
