"""Dataset pipeline: discover -> verify -> split (manifest) -> show; plus download."""
