"""Render a table as a provider statement PDF: a scanned-looking image-only PDF (skew, blur, speckle,
and optionally heavy noise with JPEG artefacts, a stamp, a pen stroke, low resolution, another font)
or a PDF with a real text layer, or a mix of both. For the OCR sample, tests, the OCR benchmark's
layout variants and synthetic providers."""

from __future__ import annotations

import io
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

FONTS = {
    "sans": ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
             "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"],
    "sans-bold": ["/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                  "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"],
    "serif": ["/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
              "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"],
    "serif-bold": ["/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
                   "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf"],
    "mono": ["/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
             "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf"],
    "mono-bold": ["/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
                  "/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf"],
}
FONT_CANDIDATES = FONTS["sans"]
# The PDF standard fonts a text-layer statement uses (no embedding needed).
PDF_FONTS = {"sans": "Helvetica", "sans-bold": "Helvetica-Bold", "serif": "Times-Roman", "serif-bold": "Times-Bold",
             "mono": "Courier", "mono-bold": "Courier-Bold"}
PAGE_SIZE = (2480, 3508)  # A4 at 300 dpi
DPI = 300


def _font(size: int, family: str = "sans"):
    from PIL import ImageFont

    for candidate in FONTS[family]:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    raise FileNotFoundError(f"no TrueType font found ({FONTS[family]}); install the Debian package fonts-dejavu-core")


@dataclass(frozen=True)
class Text:
    x: int  # pixels at 300 dpi from the left
    y: int  # pixels at 300 dpi from the top (of the text's box)
    text: str
    size: int
    family: str


@dataclass(frozen=True)
class Furniture:
    """A line of a statement that is not a row: a subtotal, a balance brought forward, a page total. `cells`
    maps column positions to their text (the label usually in the first, the figure under its column)."""

    cells: dict[int, str]


ROW_HEIGHT = 62
WRAP_HEIGHT = 46  # each further line of a wrapped cell
SHADE = 228  # zebra rows: a light gray band behind every other row


def _page_texts(columns: list[str], chunk: list, number: int, total: int, title: str, lefts: list[int],
                right: int, font: str, header_bold: bool, with_header: bool, ruling: str = "none",
                zebra: bool = False, title_lines: tuple[str, ...] = (), footer: list | None = None,
                page_size: tuple[int, int] = PAGE_SIZE) -> tuple[list[Text], list[tuple], list[tuple]]:
    """(texts, rules, shaded boxes) of one page."""
    texts = [Text(160, 150, f"{title} - page {number} of {total}", 48, font)]
    for index, line in enumerate(title_lines):
        texts.append(Text(160, 220 + index * 56, line, 40, font))
    rules, shades = [], []
    y = 320 + len(title_lines) * 56
    edges = [left - 45 for left in lefts] + [right - 35]  # column boundaries, in the gutters
    table_top = y - 20
    if with_header:
        for left, name in zip(lefts, columns, strict=True):
            texts.append(Text(left, y, name, 40, f"{font}-bold" if header_bold else font))
        if ruling == "none":  # the project's own style: one rule under the header
            rules.append((150, y + 58, right - 80, y + 58))
        else:
            rules.append((edges[0], y + 62, edges[-1], y + 62))
        if ruling in ("header_box", "grid"):
            rules.append((edges[0], y - 20, edges[-1], y - 20))
            rules += [(x, y - 20, x, y + 62) for x in edges]
        y += 82
    for index, row in enumerate([*chunk, *(footer or [])]):
        cells = row.cells if isinstance(row, Furniture) else dict(enumerate(row))
        lines = max((str(v).count("\n") + 1 for v in cells.values()), default=1)
        height = ROW_HEIGHT + (lines - 1) * WRAP_HEIGHT
        if zebra and index % 2 == 1 and not isinstance(row, Furniture):
            shades.append((edges[0], y - 10, edges[-1], y + height - 14))
        for position, value in cells.items():
            for offset, piece in enumerate(str(value).split("\n")):
                texts.append(Text(lefts[position], y + offset * WRAP_HEIGHT, piece, 40, font))
        if ruling in ("grid", "horizontal"):
            rules.append((edges[0], y + height - 12, edges[-1], y + height - 12))
        y += height
    if ruling in ("grid", "vertical"):
        rules += [(x, table_top, x, y - 12) for x in edges]
    texts.append(Text(page_size[0] // 2 - 150, page_size[1] - 160, f"Page {number} of {total}", 40, font))
    return texts, rules, shades


def render_table_pdf(columns: list[str], rows: list[list[str]], target: Path, title: str, seed: int = 0,
                     rows_per_page: int = 45, max_skew_degrees: float = 1.0, blur: float = 0.9,
                     speckle: float = 0.0015, blank_pages: int = 0, font: str = "sans", header_bold: bool = False,
                     header_on_every_page: bool = True, blank_page_after: int | None = None, scan_dpi: int = DPI,
                     heavy_noise: bool = False, stamp: bool = False, pen_stroke: bool = False,
                     text_layer_pages: str = "none", ruling: str = "none", zebra: bool = False,
                     title_lines: tuple[str, ...] = (), page_footer=None, landscape: bool = False,
                     turn: int = 0) -> Path:
    """Write the table as a PDF; returns target. text_layer_pages: "none" (every page a scan), "all" (a
    digital statement with a text layer) or "odd" (odd pages digital, even pages scanned: a mixed file).
    blank_page_after inserts one blank scanned page after that table page. A row may be a Furniture line;
    a cell with a newline is printed on two lines (wrapped). ruling: none (a rule under the header), header_box,
    grid, horizontal (between rows), vertical (between columns); zebra shades every other row; title_lines
    print under the title on every page; page_footer(chunk) gives Furniture lines under a page's rows (page
    totals); landscape draws on a wide page; turn rotates scanned pages by 90, 180 or 270 degrees (a page
    fed sideways or upside down)."""
    rng = random.Random(seed)
    noise = __import__("numpy").random.default_rng(seed)
    page_size = (PAGE_SIZE[1], PAGE_SIZE[0]) if landscape else PAGE_SIZE
    data = [r for r in rows if not isinstance(r, Furniture)]
    widths = [max([len(c)] + [max(len(p) for p in str(r[i]).split("\n")) for r in data])
              for i, c in enumerate(columns)]
    lefts, x = [], 160
    for width in widths:
        lefts.append(x)
        x += max(width, 6) * 26 + 90
    chunks = [rows[i:i + rows_per_page] for i in range(0, len(rows), rows_per_page)] or [[]]
    total = len(chunks) + blank_pages + (1 if blank_page_after is not None else 0)
    pages: list[tuple[str, object]] = []  # ("text", (texts, rules)) | ("image", PIL image)
    number = 0
    for index, chunk in enumerate(chunks, start=1):
        number += 1
        texts, rules, shades = _page_texts(columns, chunk, number, total, title, lefts, x, font, header_bold,
                                           header_on_every_page or index == 1, ruling, zebra, title_lines,
                                           page_footer(chunk) if page_footer else None, page_size)
        digital = text_layer_pages == "all" or (text_layer_pages == "odd" and number % 2 == 1)
        if digital:
            pages.append(("text", (texts, rules)))
        else:
            image = _degrade(_draw(texts, rules, shades, page_size), rng, noise, max_skew_degrees, blur, speckle,
                             scan_dpi, heavy_noise, stamp, pen_stroke)
            pages.append(("image", image.rotate(-turn, expand=True) if turn else image))
        if blank_page_after == index:
            number += 1
            pages.append(("image", _degrade(_draw([], [], [], page_size), rng, noise, max_skew_degrees, blur,
                                            speckle, scan_dpi, heavy_noise, False, False)))
    for _ in range(blank_pages):
        pages.append(("image", _degrade(_draw([], [], [], page_size), rng, noise, max_skew_degrees, blur, speckle,
                                        scan_dpi, heavy_noise, False, False)))
    target.parent.mkdir(parents=True, exist_ok=True)
    if all(kind == "image" for kind, _ in pages):
        images = [page for _, page in pages]
        quality = {"quality": 35} if heavy_noise else {}
        images[0].save(target, "PDF", resolution=float(scan_dpi), save_all=True, append_images=images[1:], **quality)
    else:
        write_pdf(pages, target, jpeg_quality=35 if heavy_noise else 75)
    return target


def _draw(texts: list[Text], rules: list[tuple], shades: list[tuple] = (), page_size: tuple[int, int] = PAGE_SIZE):
    from PIL import Image, ImageDraw

    page = Image.new("L", page_size, 255)
    draw = ImageDraw.Draw(page)
    for box in shades:
        draw.rectangle(box, fill=SHADE)
    for text in texts:
        draw.text((text.x, text.y), text.text, font=_font(text.size, text.family), fill=0)
    for rule in rules:
        draw.line([rule[:2], rule[2:]], fill=0, width=3)
    return page


def _degrade(page, rng: random.Random, noise, max_skew: float, blur: float, speckle: float, scan_dpi: int = DPI,
             heavy_noise: bool = False, stamp: bool = False, pen_stroke: bool = False):
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    if stamp:  # a round-cornered "PAID" stamp in mid-gray across a few rows and two columns
        mark = Image.new("L", (900, 320), 0)
        draw = ImageDraw.Draw(mark)
        draw.rounded_rectangle((10, 10, 890, 310), radius=40, outline=255, width=14)
        draw.text((150, 60), "PAID", font=_font(190, "sans-bold"), fill=255)
        mark = mark.rotate(rng.uniform(-20, 20), expand=True, resample=Image.BICUBIC)
        ink = Image.new("L", mark.size, 120)
        page.paste(ink, (rng.randint(700, 1200), rng.randint(900, 2300)), mark)
    if pen_stroke:  # a hand-drawn tick line across the table
        draw = ImageDraw.Draw(page)
        start = (rng.randint(200, 600), rng.randint(700, 2800))
        points = [start]
        for _ in range(12):
            points.append((points[-1][0] + rng.randint(80, 160), points[-1][1] + rng.randint(-40, 40)))
        draw.line(points, fill=40, width=7, joint="curve")
    page = page.rotate(rng.uniform(-max_skew, max_skew), resample=Image.BICUBIC, fillcolor=255)
    if blur:
        page = page.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(page).copy()
    dots = noise.random(pixels.shape) < (speckle * 8 if heavy_noise else speckle)
    pixels[dots] = noise.integers(0, 90, size=int(dots.sum()))
    if heavy_noise:  # clumps of toner dust, not only single pixels
        for _ in range(1500):
            y, x = int(noise.integers(0, pixels.shape[0] - 4)), int(noise.integers(0, pixels.shape[1] - 4))
            pixels[y:y + int(noise.integers(2, 4)), x:x + int(noise.integers(2, 4))] = int(noise.integers(0, 100))
    sigma = 14 if heavy_noise else 6
    pixels = np.clip(pixels.astype(np.int16) + noise.normal(0, sigma, pixels.shape).astype(np.int16), 0, 255)
    image = Image.fromarray(pixels.astype(np.uint8), "L")
    if scan_dpi != DPI:  # a low-resolution scanner: fewer pixels for the same page
        image = image.resize((image.width * scan_dpi // DPI, image.height * scan_dpi // DPI), Image.BILINEAR)
    return image


# ---------------------------------------------------------------- a small PDF writer


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1", "replace")


def write_pdf(pages: list[tuple[str, object]], target: Path, jpeg_quality: int = 75) -> Path:
    """A PDF of text pages (real text in the standard fonts, so the file has a text layer) and image pages
    (a full-page grayscale JPEG), in order. Only what the benchmark needs, written by hand to keep the
    dependency list short."""
    width_pt, height_pt = PAGE_SIZE[0] * 72 / DPI, PAGE_SIZE[1] * 72 / DPI
    scale = 72 / DPI
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")
    pages_id = add(b"")
    fonts = {name: add(f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>".encode())
             for name, base in PDF_FONTS.items()}
    font_resources = " ".join(f"/F{i} {obj} 0 R" for i, obj in enumerate(fonts.values())).encode()
    font_index = {name: i for i, name in enumerate(fonts)}
    kids = []
    for kind, content in pages:
        if kind == "text":
            texts, rules = content
            ops = [b"0 g"]
            for text in texts:
                size = text.size * scale
                baseline = height_pt - (text.y * scale) - size * 0.8
                ops.append(b"BT /F%d %.2f Tf %.2f %.2f Td (" % (font_index[text.family], size, text.x * scale, baseline)
                           + _escape(text.text) + b") Tj ET")
            for x1, y1, x2, y2 in rules:
                ops.append(b"%.2f w %.2f %.2f m %.2f %.2f l S" % (3 * scale, x1 * scale, height_pt - y1 * scale,
                                                                  x2 * scale, height_pt - y2 * scale))
            stream = zlib.compress(b"\n".join(ops))
            contents = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
            resources = b"<< /Font << " + font_resources + b" >> >>"
        else:
            buffer = io.BytesIO()
            content.save(buffer, "JPEG", quality=jpeg_quality)
            data = buffer.getvalue()
            image = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                        b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % (content.width,
                                                                                            content.height, len(data))
                        + data + b"\nendstream")
            stream = b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (width_pt, height_pt)
            contents = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
            resources = b"<< /XObject << /Im0 %d 0 R >> >>" % image
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %.2f %.2f] /Contents %d 0 R /Resources %s >>"
                        % (pages_id, width_pt, height_pt, contents, resources)))
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    objects[pages_id - 1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids)
                             + b"] /Count %d >>" % len(kids))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out.getvalue())
    return target
