"""Label-noise models and exact, nested noise injection.

:mod:`.base` holds what every model shares (flip plans, :func:`apply_plan`, the registry);
each other module is one model and registers itself with :data:`NOISE_MODELS`:
:mod:`.uniform` (with :func:`inject_noise`), :mod:`.class_conditional`, :mod:`.instance` and
:mod:`.real`. See ``docs/noise-models.md``.
"""

from .base import (
    NOISE_MODELS,
    FlipPlan,
    NoiseModel,
    NoisyLabels,
    NoOptions,
    Reach,
    Shortfall,
    apply_plan,
    balanced_order,
    find_shortfall,
    get_noise_model_class,
    interleave_classes,
    make_noise_model,
    n_flips,
    other_class,
)
from .uniform import UniformNoise, inject_noise

__all__ = [
    "NOISE_MODELS",
    "FlipPlan",
    "NoOptions",
    "NoiseModel",
    "NoisyLabels",
    "Reach",
    "Shortfall",
    "UniformNoise",
    "apply_plan",
    "balanced_order",
    "find_shortfall",
    "get_noise_model_class",
    "inject_noise",
    "interleave_classes",
    "make_noise_model",
    "n_flips",
    "other_class",
]
