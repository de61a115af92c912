"""remote_kernel — a Jupyter kernel bridge to Backend.AI-compatible execution services."""

__version__ = "0.1.0"
