"""Sequence-length scaling study: its entry point `flashipa-scaling` (cli.py, which calls training), the
step-timing callback, one sweep point with its failures recorded as results, the sweep's shared results table,
the report (tables, log-log plots, fitted slopes) and the maximum-length bisection. Imports torch, numpy,
Lightning, Hydra and train/ (matplotlib for the plots, on demand); train/ imports nothing from here."""
