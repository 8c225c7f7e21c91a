"""How good a trained model is, measured: metrics (every reported figure), calibration
(temperature, conformal sets), a split's figures (evaluate), robustness under corruptions,
out-of-scope folders (scope), the shortcut audit, Grad-CAM (explain) and grouped
cross-validation's figures (cv, cv_fold). Every step opens its model and data with
`runs.open_run`.

It computes and returns records and may write its own JSON and CSV; it writes no report (that
is `reporting`, and `workflows` joins the two). The one picture it makes is Grad-CAM's
(`explain`: the heatmap overlay and its captioned figure, returned as images, because a heatmap
is what it computes). It may import data, models and train.
"""
