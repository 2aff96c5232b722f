"""Optimizers: how one is built from `conf/optimizer/` (`build`), Muon (`muon`), and the bytes of state each keeps
per parameter (`state`)."""
