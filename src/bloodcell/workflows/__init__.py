"""Whole jobs made of the layers below: each computes with `evaluation` (or trains) and writes
with `reporting`. `bloodcell evaluate` (evaluate: a split, robustness, out-of-scope folders),
`bloodcell audit` (audit), `bloodcell cv` (cv), `bloodcell run` (run) and `bloodcell benchmark`
(benchmark).

They only call the other packages in order and may import all of them but `cli`; the CLI
calls them.
"""
