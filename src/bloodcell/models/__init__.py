"""Model registry, pretrained weights, the saved-model format, the engines that run it
(`engines.open_model`) and the rule for when it gives no class (`refusal`, with the
out-of-scope detector `scope_detector`, fitted by `scope_fit`, and the cell-type gate
`cell_gate`).

Each name is imported from its module (`models.registry.create_model`, ...); this package
re-exports nothing, because the registry imports torch and torchvision, which an ONNX engine
(`models.backends`, `models.engines`) never needs.
"""
