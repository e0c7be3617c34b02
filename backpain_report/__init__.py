"""A reusable Django app that turns one article into a working lead magnet."""

__version__ = "0.1.0"
