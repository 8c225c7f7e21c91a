"""Whole jobs made of the layers below: each computes with `evaluation` (or trains) and writes
with `reporting`, one module per job: `bloodcell evaluate` (evaluate_job: a split, robustness,
out-of-scope folders), `bloodcell audit` (audit_job), `bloodcell cv` (cv_job), `bloodcell run`
(run_job) and `bloodcell benchmark` (benchmark_job).

They only call the other packages in order and may import all of them but `cli`; the CLI
calls them.
"""
