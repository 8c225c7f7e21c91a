"""Images and what becomes of them before any model: discover -> verify -> split (manifest) ->
cells (the white-cell finder) -> colour (the cells' lightness view, and the stain audit's
edits) and scale (magnification from the red cells) -> preprocess (the model input, without
torch; standardize, its torch per-image step) -> dataset (torch datasets for training); plus
the one decoder (decode), the one walk over users' files (files), pictures (show), download
and corruptions. The bottom
layer: imports only `bloodcell.errors`, `labels`, `records` and `run_dir` of this package,
never models or anything above."""
