"""Figures: every ``plot_*(ax, ...)`` draws on the Axes it is given and returns it.

Chapters arrange and caption them; nothing here opens a window or sets global state on import.
"""
from .data import *  # noqa: F401,F403
from .data import __all__ as _data_all
from .style import METHOD_COLORS, use_style

__all__ = [*_data_all, "METHOD_COLORS", "use_style"]

from .rate import *  # noqa: F401,F403,E402
from .rate import __all__ as _rate_all  # noqa: E402

__all__ += _rate_all
