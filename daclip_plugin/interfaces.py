"""Base classes for the components that plugins register.

Every component receives images already normalised by :mod:`daclip_plugin.imaging`:
``float32`` arrays of shape ``(H, W, 3)``, RGB, values in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import options as _options

#: Called after each unit of work with ``(done, total)``.
ProgressCallback = Callable[[int, int], None]
#: Polled between units of work; returning ``True`` asks the run to stop.
StopCallback = Callable[[], bool]


class _Component:
    name: str = ""
    description: str = ""
    #: The options it takes, as :class:`daclip_plugin.options.Option` objects. ``None``: not
    #: declared (they are then read from the method's signature, and not checked).
    options: Optional[Sequence[_options.Option]] = None
    kind = ""

    def resolve_options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every declared option's value: ``given`` (checked) over the declared defaults."""
        return _options.of(self).resolve(f"{self.kind} {self.name!r}", given)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class Restorer(_Component):
    """Turns a degraded RGB image into a restored one.

    Subclasses set :attr:`name` (unique among all plugins) and implement :meth:`restore`;
    they may declare their :attr:`options` (the CLI, the napari widget and option checks
    read them). Long-running restorers should call ``progress`` after every step and raise
    :class:`daclip_plugin.errors.Cancelled` soon after ``should_stop()`` returns ``True``.
    """

    kind = "restorer"

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


class Classifier(_Component):
    """Scores an RGB image against a list of degradation names.

    Subclasses set :attr:`name` and implement :meth:`classify` (and may declare :attr:`options`).
    """

    kind = "classifier"

    def classify(self, image: np.ndarray, **options) -> dict[str, float]:
        """Return a probability for each degradation name (they sum to 1)."""
        raise NotImplementedError
