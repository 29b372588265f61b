"""hubgate: Dask clusters for JupyterHub users, wire-compatible with dask-gateway."""

from ._version import __version__

__all__ = ["__version__"]
