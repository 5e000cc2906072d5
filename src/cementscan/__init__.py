"""cementscan: finds bone cement outside the treated vertebrae on CT after vertebral augmentation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cementscan")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
