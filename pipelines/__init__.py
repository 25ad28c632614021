"""Thin click entry points that wire the library (tlcore) to the tracking layer (tracking)."""
