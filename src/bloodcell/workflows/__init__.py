"""Whole jobs made of the layers below: `bloodcell run` (run) and `bloodcell benchmark`
(benchmark).

They only call the other packages in order; the CLI calls them.
"""
