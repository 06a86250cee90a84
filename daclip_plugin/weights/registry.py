"""Model specifications (which files a named model has) and the registry plugins fill."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from .. import plugins
from ..errors import DaclipError, UnknownNameError, WeightsNotFoundError

ENV_WEIGHTS_DIR = "DACLIP_WEIGHTS_DIR"
OFFICIAL_REPO = "weblzw/daclip-uir-ViT-B-32-irsde"
DEFAULT_MODEL = "universal-ir"
OFFLINE_MODEL = "tiny"
"""The embedded model shipped inside the package: it works without any download."""

ROLES = ("daclip", "unet", "direct")
"""The files a model may have: DA-CLIP, the IR-SDE UNet and (optional) the direct restorer UNet."""
ROLE_LABELS = {"daclip": "DA-CLIP", "unet": "UNet", "direct": "direct restorer"}


def check_roles(*roles: str) -> None:
    """Raise ``ValueError`` naming any of ``roles`` that is not one of :data:`ROLES`."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown weight file role(s) {', '.join(map(repr, unknown))}; roles: {', '.join(ROLES)}")

SOURCE_EXPLICIT = "explicit path"
SOURCE_ENV = ENV_WEIGHTS_DIR
SOURCE_CACHE = "Hugging Face cache"
SOURCE_PACKAGE = "package"
SOURCE_DIR = "folder"
SOURCE_DOWNLOADED = "downloaded"

ProgressCallback = Callable[[int, Optional[int]], None]
"""``progress(bytes_done, bytes_total)``; ``bytes_total`` is ``None`` when the server gives no size."""
StopCallback = Callable[[], bool]
PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class WeightFile:
    """One weight file: on the Hugging Face Hub (``repo_id``) or inside a Python package (``package``).

    ``size`` is the size in bytes when known (``None``: unknown). ``sha256`` pins the file's
    content: a download or a file on disk with another hash is refused.
    """

    filename: str
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    size: Optional[int] = None
    package: Optional[str] = None
    sha256: Optional[str] = None

    def __post_init__(self) -> None:
        parts = self.filename.split("/") if self.filename else []
        if not parts or "\\" in self.filename or self.filename.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"a weight file needs a relative file name without '..', got {self.filename!r}")
        if (self.repo_id is None) == (self.package is None):
            raise ValueError(f"weight file {self.filename!r}: give exactly one of repo_id or package")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"weight file {self.filename!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @classmethod
    def hub(
        cls, repo_id: str, filename: str, *, revision: Optional[str] = None, size: Optional[int] = None,
        sha256: Optional[str] = None,
    ) -> "WeightFile":
        """A file of a Hugging Face Hub model repository (downloaded on request)."""
        return cls(filename=filename, repo_id=repo_id, revision=revision, size=size, sha256=sha256)

    @classmethod
    def in_package(cls, package: str, filename: str, *, size: Optional[int] = None, sha256: Optional[str] = None) -> "WeightFile":
        """A file shipped inside the Python package ``package`` (no download needed)."""
        return cls(filename=filename, package=package, size=size, sha256=sha256)

    @property
    def embedded(self) -> bool:
        """Whether the file ships inside a Python package."""
        return self.package is not None

    def packaged_path(self) -> Path:
        """The path of an embedded file inside its installed package."""
        if self.package is None:
            raise ValueError(f"{self.filename!r} is not shipped inside a package")
        import importlib.resources

        try:
            root = importlib.resources.files(self.package)
        except ModuleNotFoundError as exc:
            raise WeightsNotFoundError(
                f"the package {self.package!r} that should hold {self.filename!r} is not installed"
            ) from exc
        return Path(os.fspath(root.joinpath(self.filename)))

    def describe(self) -> str:
        """Where the file comes from, for messages."""
        if self.package is not None:
            return f"{self.filename} (inside package {self.package})"
        revision = f"@{self.revision}" if self.revision else ""
        return f"{self.filename} (Hugging Face repository {self.repo_id}{revision})"


@dataclass(frozen=True)
class ModelSpec:
    """A named set of DA-CLIP and UNet weights, with architecture hints for loading them.

    ``clip_cfg`` is the open_clip config dict of the DA-CLIP model, or the name of a DA-CLIP
    architecture of :mod:`daclip_plugin.nn.configs` (``"daclip_ViT-B-32"``, ``"tiny"``);
    ``unet_cfg`` the ``ConditionalUNet`` keyword arguments, or the name of a UNet architecture
    there (``"universal-ir"``, ``"tiny"``). ``None``
    lets :mod:`daclip_plugin.weights.checkpoints` read the architecture from the file. ``sde`` holds
    the IR-SDE options the UNet was trained with (``None``: the official ones).

    ``direct`` is an optional third file: a one-pass *direct restorer* UNet (same architecture
    family, see :mod:`daclip_plugin.engine.direct`), used by the ``daclip-direct`` restorer;
    ``direct_cfg`` is its architecture hint like ``unet_cfg``. ``restorer`` names the restorer
    the model prefers (``None``: the default ``daclip`` one), e.g. in ``daclip restore``.
    ``clip_view`` is how its DA-CLIP sees an image, as it was trained to: ``"resize"`` (the
    official preprocessing) or ``"tiles"`` (see :func:`daclip_plugin.nn.daclip.clip_views`).
    """

    name: str
    description: str
    daclip: WeightFile
    unet: WeightFile
    clip_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    unet_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    sde: Optional[Mapping[str, Any]] = field(default=None, hash=False)
    direct: Optional[WeightFile] = None
    direct_cfg: Union[str, Mapping[str, Any], None] = field(default=None, hash=False)
    restorer: Optional[str] = None
    clip_view: str = "resize"

    @property
    def files(self) -> tuple[tuple[str, WeightFile], ...]:
        """``(("daclip", file), ("unet", file))``, plus ``("direct", file)`` when the model has one."""
        files = (("daclip", self.daclip), ("unet", self.unet))
        return files + ((("direct", self.direct),) if self.direct is not None else ())

    def file(self, role: str) -> Optional[WeightFile]:
        """The file of ``role`` (one of :data:`ROLES`); ``None`` when the model has none."""
        check_roles(role)
        return dict(self.files).get(role)

    @property
    def embedded(self) -> bool:
        """Whether every file ships inside a package: the model works offline."""
        return all(file.embedded for _, file in self.files)


@dataclass(frozen=True)
class ResolvedModel:
    """Local paths of a model's files; ``sources`` says where each was found.

    A role that was not asked for (``resolve(..., roles=...)``) or that the model does not
    have is ``None``.
    """

    spec: ModelSpec
    daclip: Optional[Path]
    unet: Optional[Path]
    sources: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    direct: Optional[Path] = None

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles resolved here, in :data:`ROLES` order."""
        return tuple(role for role in ROLES if getattr(self, role) is not None)

    def path(self, role: str) -> Path:
        check_roles(role)
        path = getattr(self, role)
        if path is None:
            raise DaclipError(f"the {ROLE_LABELS[role]} file of model {self.spec.name!r} was not resolved")
        return path


@dataclass(frozen=True)
class FileStatus:
    """Whether one file of a model is available here, and where."""

    role: str
    file: WeightFile
    path: Optional[Path]
    source: Optional[str]
    size: Optional[int]
    """Bytes on disk when found, else the size the spec gives (``None``: unknown)."""

    @property
    def found(self) -> bool:
        return self.path is not None

    @property
    def cached(self) -> bool:
        """Alias of :attr:`found`: the file is on this computer."""
        return self.found

    @property
    def label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


@dataclass
class LoadedModel:
    """The loaded modules of a model (``None`` for a role that was not resolved)."""

    daclip: Any
    unet: Any
    resolved: ResolvedModel
    direct: Any = None

    @property
    def spec(self) -> ModelSpec:
        return self.resolved.spec


def _model_problem(component: object) -> Optional[str]:
    return None if isinstance(component, ModelSpec) else f"is a {type(component).__name__}, not a daclip_plugin.weights.ModelSpec"


plugins.require("register_models", _model_problem)  # what is not a ModelSpec is skipped, with a warning


def _registry() -> dict[str, plugins.Registered]:
    return plugins.models()


def list_models() -> list[ModelSpec]:
    """Every registered model specification, sorted by name."""
    registry = _registry()
    return [registry[name].component for name in sorted(registry)]


def model_plugin(name: str) -> str:
    """The name of the plugin that registered model ``name``."""
    get_model(name)
    return _registry()[name].plugin


def get_model(name: Union[str, ModelSpec]) -> ModelSpec:
    """The model registered as ``name`` (a :class:`ModelSpec` is returned as it is)."""
    if isinstance(name, ModelSpec):
        return name
    registry = _registry()
    if name not in registry:
        available = ", ".join(sorted(registry)) or "none (no plugin registered one)"
        raise UnknownNameError(f"unknown model {name!r}; available: {available}")
    return registry[name].component


def format_size(size: Optional[int]) -> str:
    """``1234567`` -> ``"1.2 MB"``; ``None`` -> ``"size unknown"``."""
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
