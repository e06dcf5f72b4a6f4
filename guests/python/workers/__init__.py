"""Cloudflare's module name for the Python Workers API: the same as
``dohost``, so code written for Cloudflare runs unchanged."""

from dohost import *  # noqa: F403
from dohost import __all__  # noqa: F401
