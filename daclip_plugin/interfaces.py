"""Base classes for the components that plugins register.

Every component receives images already normalised by :mod:`daclip_plugin.imaging`:
``float32`` arrays of shape ``(H, W, 3)``, RGB, values in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

#: Called after each unit of work with ``(done, total)``.
ProgressCallback = Callable[[int, int], None]
#: Polled between units of work; returning ``True`` asks the run to stop.
StopCallback = Callable[[], bool]


class Restorer:
    """Turns a degraded RGB image into a restored one.

    Subclasses set :attr:`name` (unique among all plugins) and implement :meth:`restore`.
    Long-running restorers should call ``progress`` after every step and raise
    :class:`daclip_plugin.errors.Cancelled` soon after ``should_stop()`` returns ``True``.
    """

    name: str = ""
    description: str = ""

    def restore(
        self,
        image: np.ndarray,
        *,
        progress: Optional[ProgressCallback] = None,
        should_stop: Optional[StopCallback] = None,
        **options,
    ) -> np.ndarray:
        """Return the restored ``float32`` ``(H, W, 3)`` image in ``[0, 1]``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Classifier:
    """Scores an RGB image against a list of degradation names.

    Subclasses set :attr:`name` and implement :meth:`classify`.
    """

    name: str = ""
    description: str = ""

    def classify(self, image: np.ndarray, **options) -> dict[str, float]:
        """Return a probability for each degradation name (they sum to 1)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
