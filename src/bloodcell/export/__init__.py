"""Deployable files: ONNX export with the out-of-scope score in the graph (onnx) and the check that
keeps an engine only when its labels agree with its reference (check).

It may import everything up to reporting.
"""
