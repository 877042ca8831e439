"""Noise models beyond ``uniform``; each module registers itself with ``noise.NOISE_MODELS``."""
