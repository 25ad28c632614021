"""Built-in dataset readers; importing this package registers them by name."""

from tlcore.data.readers import ddsm, inbreast, mias, ultrasound  # noqa: F401
