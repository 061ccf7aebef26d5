"""Serve plotly.min.js straight from the installed plotly package, so no page needs a CDN."""
from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.checks import Error
from django.core.files.storage import FileSystemStorage

PLOTLY_STATIC_NAME = "vendor/plotly.min.js"
PLOTLY_DIR = Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    """Finds exactly one file: `vendor/plotly.min.js`, the bundle shipped inside plotly."""

    storage = FileSystemStorage(location=PLOTLY_DIR, base_url="vendor/")

    def check(self, **kwargs):
        if not (PLOTLY_DIR / "plotly.min.js").is_file():
            return [Error(f"plotly.min.js is missing from {PLOTLY_DIR}; reinstall the plotly package")]
        return []

    def find(self, path, find_all=False, **kwargs):
        if path != PLOTLY_STATIC_NAME:
            return [] if find_all else None
        match = str(PLOTLY_DIR / "plotly.min.js")
        return [match] if find_all else match

    def list(self, ignore_patterns):
        yield "plotly.min.js", _PrefixedStorage()


class _PrefixedStorage(FileSystemStorage):
    """collectstatic copies `plotly.min.js` to `vendor/plotly.min.js`."""

    prefix = "vendor"

    def __init__(self):
        super().__init__(location=PLOTLY_DIR)
