"""Reconstruction baselines (gridding, l1-wavelet, TV, temporal TV) and their solvers.

Import-light: ``from sirem_cli.recon.baselines import BASELINE_METHODS`` loads no torch.
"""
