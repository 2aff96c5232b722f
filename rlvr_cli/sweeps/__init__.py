"""`rlvr sweep` and `rlvr report`: sweep files to cells, Hydra multirun launching, the manifest, the report."""
