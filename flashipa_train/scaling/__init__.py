"""Sequence-length scaling study: the step-timing callback, one sweep point with its failures recorded as
results, the sweep's shared results table, the report (tables, log-log plots, fitted slopes) and the
maximum-length bisection. Imports torch, numpy and Lightning only (matplotlib for the plots, on demand)."""
