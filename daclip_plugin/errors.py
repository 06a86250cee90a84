"""Exceptions raised by daclip-plugin, all subclasses of :class:`DaclipError`."""


class DaclipError(Exception):
    """Base class of every error daclip-plugin raises on purpose."""


class UnknownNameError(DaclipError, KeyError):
    """A restorer, classifier or model name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidImageError(DaclipError, ValueError):
    """An input image of the wrong shape, dtype or content (empty, NaN, ...)."""


class InvalidOptionError(DaclipError, ValueError):
    """An option value of the wrong type, out of range, or not applicable with the other options."""


class CheckpointError(DaclipError):
    """A checkpoint file that is corrupt or does not fit the model."""


class OutputError(DaclipError):
    """An output that cannot or must not be written (an input, an existing file, an unwritable folder)."""


class PluginError(DaclipError):
    """A plugin's component failed, or returned something other than its contract says."""


class Cancelled(DaclipError):
    """A run stopped because the caller asked it to."""


class WeightsNotFoundError(DaclipError, FileNotFoundError):
    """Model weights that are not on this computer (and were not, or could not be, downloaded)."""


class DownloadError(WeightsNotFoundError):
    """A requested download of model weights failed (network down, file not on the Hub, ...)."""
