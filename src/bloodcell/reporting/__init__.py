"""How figures become something to read: markdown helpers, plots, the evaluation, run, CV and
robustness reports, and the model card.

It takes computed records and draws them; it may import data, models, train and evaluation, and
computes nothing a report does not need.
"""
