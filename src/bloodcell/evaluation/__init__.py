"""How good a trained model is, measured: metrics (every reported figure), calibration
(temperature, conformal sets), a split's figures (split_metrics), robustness under corruptions,
the out-of-scope folders (scope_folders), the shortcut audit (shortcut_audit), Grad-CAM
(gradcam) and grouped cross-validation's figures (cv_figures, cv_fold). Every step opens its
model and data with `runs.open_run`.

It computes and returns records and may write its own JSON and CSV; it writes no report and
plots no figure of results (that is `reporting`, and `workflows` joins the two). It does make
images where they are what it measures or computes: the edited inputs the shortcut audit and
robustness ask the model about (cells erased, moved, recoloured; corrupted copies), and
Grad-CAM's heatmap overlay and its captioned figure (`gradcam`), all returned as images. It may
import data, models and train.
"""
