"""Figures: every ``plot_*(ax, ...)`` draws on the Axes it is given and returns it.

Chapters arrange and caption them; nothing here opens a window or sets global state on import.
One module per figure family: data (samples, masks), rate (synthetic subspaces), curves (metrics
over training), segmentation (qualitative panels), features (cosine similarity), claims (the
ledger), scaling (MCR² at lower resolution), scale (which profile a build renders); style holds the
sizes of every figure and the check that its text reads on the page (:func:`legible`).
"""
from . import claims, curves, data, features, rate, scale, scaling, segmentation, style
from .claims import *  # noqa: F401,F403
from .curves import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .features import *  # noqa: F401,F403
from .rate import *  # noqa: F401,F403
from .scale import *  # noqa: F401,F403
from .scaling import *  # noqa: F401,F403
from .segmentation import *  # noqa: F401,F403
from .style import *  # noqa: F401,F403

__all__ = [
    *claims.__all__, *curves.__all__, *data.__all__, *features.__all__, *rate.__all__, *scale.__all__,
    *scaling.__all__, *segmentation.__all__, *style.__all__,
]
