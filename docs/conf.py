"""Sphinx configuration for the pytest-cowfork documentation."""

from __future__ import annotations

import os
import sys

import pytest_cowfork

# The local extension that renders the reference from the plugin's code.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

project = "pytest-cowfork"
author = "the pytest-cowfork contributors"
copyright = author
release = pytest_cowfork.__version__
version = ".".join(release.split(".")[:2])

needs_sphinx = "7.4"
extensions = ["sphinx.ext.autodoc", "cowfork_reference"]
exclude_patterns = ["_build"]
root_doc = "index"
default_role = "literal"

autodoc_member_order = "bysource"

html_theme = "alabaster"
html_title = "pytest-cowfork"
html_theme_options = {
    "description": "Every test in its own copy-on-write clone of a warm pytest",
    "fixed_sidebar": True,
}
