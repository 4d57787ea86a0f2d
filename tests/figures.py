"""Checks that a figure is a real picture, not an empty canvas."""

from pathlib import Path

from PIL import Image


def assert_real_png(path: Path, min_bytes: int = 10_000) -> None:
    """A PNG of a sensible size with more than a handful of colours."""
    assert path.stat().st_size > min_bytes, path
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 400 and img.height >= 250
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is None or len(colours) > 10
