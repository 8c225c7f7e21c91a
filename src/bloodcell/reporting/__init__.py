"""How figures become something to read: markdown helpers, plots, the evaluation, run, CV,
robustness, out-of-scope folders (scope_report) and audit reports, and the model card. Each
`write_*` writes a study's record with its pictures and report section.

It takes computed records and draws them; it may import data, models, train and evaluation, and
computes nothing a report does not need.
"""
