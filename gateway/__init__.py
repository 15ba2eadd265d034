"""gateway: a self-hosted webhook gateway."""

__version__ = "0.1.0"
