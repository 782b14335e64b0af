"""exe-coder: natural language to signed macOS arm64 executables."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("exe-coder")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "unknown"
