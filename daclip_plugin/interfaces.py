"""Base classes for the components that plugins register.

Every component receives images already normalised by :mod:`daclip_plugin.imaging`:
``float32`` arrays of shape ``(H, W, 3)``, RGB, values in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import options as _options
from .steps import ProgressCallback, Step, Steps, StopCallback, drive, yields_steps

__all__ = ["Classifier", "Estimate", "ProgressCallback", "Restorer", "Step", "StopCallback", "yields_steps"]


@dataclass(frozen=True)
class Estimate:
    """What steers a restoration: the degradation probabilities and the model's conditioning.

    ``contexts`` are the restorer's own inputs (for DA-CLIP, the UNet's two context
    tensors); :meth:`mean` averages several estimates, e.g. over the slices of a stack.
    """

    probabilities: Mapping[str, float]
    contexts: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def mean(cls, estimates: Sequence["Estimate"]) -> "Estimate":
        """The element-wise mean of ``estimates`` (probabilities and contexts)."""
        if not estimates:
            raise ValueError("no estimates to average")
        names = list(dict.fromkeys(name for item in estimates for name in item.probabilities))
        count = len(estimates)
        probabilities = {name: sum(float(item.probabilities.get(name, 0.0)) for item in estimates) / count for name in names}
        contexts = {key: sum(item.contexts[key] for item in estimates) / count for key in estimates[0].contexts}
        return cls(dict(sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)), contexts)


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

    Subclasses set :attr:`name` (unique among all plugins) and implement one of two methods;
    they may declare their :attr:`options` (the CLI, the napari widget and option checks
    read them):

    * :meth:`iter_restore`, a generator that yields a :class:`~daclip_plugin.steps.Step`
      after each unit of work (a network call) and returns the image. It is stopped by not
      being resumed, so it needs no stop flag; the built-in restorers work this way.
    * :meth:`restore` with callbacks: long-running restorers call ``progress(done, total)``
      after every step and raise :class:`daclip_plugin.errors.Cancelled` soon after
      ``should_stop()`` returns ``True``. Generators of such restorers
      (:func:`daclip_plugin.api.iter_restore`) run them in a helper thread.
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
        """Return the restored ``float32`` ``(H, W, 3)`` image in ``[0, 1]``.

        A restorer that implements :meth:`estimate` also takes ``estimate=`` (an
        :class:`Estimate`), and is then steered by it instead of by its own estimate of
        ``image``: one estimate can steer every slice of a stack. By default this runs
        :meth:`iter_restore` to its end.
        """
        if not yields_steps(self):
            raise NotImplementedError(f"{type(self).__name__} implements neither restore() nor iter_restore()")
        return drive(self.iter_restore(image, **options), progress, should_stop)

    def iter_restore(self, image: np.ndarray, **options) -> Steps[np.ndarray]:
        """:meth:`restore` as a generator of :class:`~daclip_plugin.steps.Step` events returning the image."""
        raise NotImplementedError

    def estimate(self, image: np.ndarray, **options) -> Optional[Estimate]:
        """What would steer the restoration of ``image`` (``None``: this restorer has no such thing)."""
        return None


Restorer.iter_restore.placeholder = True  # see yields_steps


class Classifier(_Component):
    """Scores an RGB image against a list of degradation names.

    Subclasses set :attr:`name` and implement :meth:`classify` (and may declare :attr:`options`).
    """

    kind = "classifier"

    def classify(self, image: np.ndarray, **options) -> dict[str, float]:
        """Return a probability for each degradation name (they sum to 1)."""
        raise NotImplementedError
