"""How good a trained model is, measured: metrics (every reported figure), calibration
(temperature, conformal sets), evaluation of a split, robustness under corruptions, out-of-scope
folders (scope), the shortcut audit, Grad-CAM (explain) and grouped cross-validation (cv,
cv_fold). Every step opens its model and data with `runs.open_run`.

It may import data, models and train; it hands its figures to `reporting` to be drawn and
written (imported inside the functions that write).
"""
