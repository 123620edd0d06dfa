"""meshnode: an offline-first mesh node in the Secure Scuttlebutt family."""

__version__ = "0.1.0"
__all__ = ["__version__"]
