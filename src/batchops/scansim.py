"""Render a table as a scanned-looking, image-only PDF: a page title, the header repeated on every
page, a footer, slight skew, blur and speckle. For the OCR sample, tests and synthetic providers."""

from __future__ import annotations

import random
from pathlib import Path

FONT_CANDIDATES = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                   "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"]
PAGE_SIZE = (2480, 3508)  # A4 at 300 dpi


def _font(size: int):
    from PIL import ImageFont

    for candidate in FONT_CANDIDATES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    raise FileNotFoundError(f"no TrueType font found ({FONT_CANDIDATES}); install the Debian package fonts-dejavu-core")


def render_table_pdf(columns: list[str], rows: list[list[str]], target: Path, title: str, seed: int = 0,
                     rows_per_page: int = 45, max_skew_degrees: float = 1.0, blur: float = 0.9,
                     speckle: float = 0.0015, blank_pages: int = 0) -> Path:
    """Write an image-only PDF of the table; returns target."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    font, title_font = _font(40), _font(48)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    char_width = 26
    lefts, x = [], 160
    for width in widths:
        lefts.append(x)
        x += max(width, 6) * char_width + 90
    chunks = [rows[i:i + rows_per_page] for i in range(0, len(rows), rows_per_page)] or [[]]
    pages = []
    total = len(chunks) + blank_pages
    for number, chunk in enumerate(chunks, start=1):
        page = Image.new("L", PAGE_SIZE, 255)
        draw = ImageDraw.Draw(page)
        draw.text((160, 150), f"{title} - page {number} of {total}", font=title_font, fill=0)
        y = 320
        for left, name in zip(lefts, columns, strict=True):
            draw.text((left, y), name, font=font, fill=0)
        draw.line([(150, y + 58), (x - 80, y + 58)], fill=0, width=3)
        y += 80
        for row in chunk:
            for left, value in zip(lefts, row, strict=True):
                draw.text((left, y), value, font=font, fill=0)
            y += 62
        draw.text((PAGE_SIZE[0] // 2 - 150, PAGE_SIZE[1] - 160), f"Page {number} of {total}", font=font, fill=0)
        pages.append(_degrade(page, rng, noise, max_skew_degrees, blur, speckle))
    for _ in range(blank_pages):
        pages.append(_degrade(Image.new("L", PAGE_SIZE, 255), rng, noise, max_skew_degrees, blur, speckle))
    target.parent.mkdir(parents=True, exist_ok=True)
    pages[0].save(target, "PDF", resolution=300.0, save_all=True, append_images=pages[1:])
    return target


def _degrade(page, rng: random.Random, noise, max_skew: float, blur: float, speckle: float):
    import numpy as np
    from PIL import Image, ImageFilter

    page = page.rotate(rng.uniform(-max_skew, max_skew), resample=Image.BICUBIC, fillcolor=255)
    if blur:
        page = page.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(page).copy()
    dots = noise.random(pixels.shape) < speckle
    pixels[dots] = noise.integers(0, 90, size=int(dots.sum()))
    pixels = np.clip(pixels.astype(np.int16) + noise.normal(0, 6, pixels.shape).astype(np.int16), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "L")
