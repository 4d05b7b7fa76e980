"""Packages, and the Hydra configs as package data: configs/ stays at the top of the repository (the
lightning-hydra-template layout), and wheels carry it as flashipa_train/configs so that flashipa-train and
flashipa-sample work from any folder after a plain `pip install .`. The kernels/ folder is installed as
flashipa_kernels: `kernels` is the import name of a published package. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

kernel_packages = ["flashipa_kernels"] + [f"flashipa_kernels.{name}" for name in find_packages("kernels")]

setup(
    packages=find_packages(include=["flashipa_train*"]) + ["flashipa_train.configs"] + kernel_packages,
    package_dir={"flashipa_train.configs": "configs", "flashipa_kernels": "kernels"},
    package_data={"flashipa_train.configs": ["**/*.yaml"]},
)
