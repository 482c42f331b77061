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

from .curves import *  # noqa: F401,F403,E402
from .curves import __all__ as _curves_all  # noqa: E402
from .segmentation import *  # noqa: F401,F403,E402
from .segmentation import __all__ as _segmentation_all  # noqa: E402
from .features import *  # noqa: F401,F403,E402
from .features import __all__ as _features_all  # noqa: E402

__all__ += _curves_all + _segmentation_all + _features_all

from .claims import *  # noqa: F401,F403,E402
from .claims import __all__ as _claims_all  # noqa: E402

__all__ += _claims_all
