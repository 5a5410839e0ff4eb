"""Pages to words with boxes (in PDF points): from the PDF's own text layer when it has one (Poppler's
pdftotext -bbox: exact, and a hundred times cheaper), else from the page image (pdftoppm) cleaned
and read by Tesseract (pytesseract) in one process per batch of pages, so the language model is
loaded once per batch rather than once per page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchops.errors import BatchOpsError
from batchops.ocr.layout import Word

POINTS_PER_INCH = 72.0
# Below this native resolution a scan is rendered at LOW_RES_DPI: more pixels than the scan has
# only cost time, and Tesseract reads 200-dpi text as well as 300-dpi text.
LOW_RES_DPI = 200


class OcrError(BatchOpsError):
    """The PDF could not be read into a table that passes validation."""


@dataclass
class PageWords:
    page: int
    source: str  # "text" (the PDF's text layer) | "ocr" | "empty"
    words: list[Word] = field(default_factory=list)
    dpi: int | None = None
    image: Path | None = None  # the cleaned page image, for second reads of doubtful cells
    skew_degrees: float = 0.0
    rules: Any = None  # batchops.ocr.rules.Rules of the page image, when it was searched
    turned_degrees: int = 0  # the page was stored sideways or upside down and turned by this much to read it


# ---------------------------------------------------------------- binaries


def import_pytesseract():
    """pytesseract, imported without the pandas it loads when it can (half a second of CPU, for a
    DataFrame output BatchOps never asks for). Call it before starting threads."""
    import sys

    if "pytesseract" in sys.modules or "pandas" in sys.modules:
        import pytesseract
        return pytesseract
    sys.modules["pandas"] = None  # pytesseract catches the ModuleNotFoundError this raises
    try:
        import pytesseract
    finally:
        del sys.modules["pandas"]
    return pytesseract


def locate_binaries(lang: str) -> dict[str, str]:
    """Tesseract and Poppler from TESSERACT_CMD / POPPLER_PATH or PATH, with the language data."""
    tesseract = os.environ.get("TESSERACT_CMD") or shutil.which("tesseract")
    if not tesseract or not Path(tesseract).exists():
        raise OcrError("the tesseract binary was not found: install the Debian packages tesseract-ocr and "
                       f"tesseract-ocr-{lang} (apt-get install -y tesseract-ocr tesseract-ocr-{lang}) or set TESSERACT_CMD")
    poppler_dir = os.environ.get("POPPLER_PATH")
    tools = {}
    for tool in ("pdftoppm", "pdfinfo", "pdftotext", "pdfimages"):
        path = str(Path(poppler_dir) / tool) if poppler_dir else shutil.which(tool)
        if not path or not Path(path).exists():
            raise OcrError(f"the Poppler tools ({tool} and others) were not found: install the Debian package "
                           "poppler-utils (apt-get install -y poppler-utils) or set POPPLER_PATH to their folder")
        tools[tool] = path
    tools["poppler_path"] = str(Path(tools["pdftoppm"]).parent)
    import_pytesseract()
    languages = subprocess.run([tesseract, "--list-langs"], capture_output=True, text=True).stdout.split()
    if lang not in languages:
        raise OcrError(f"Tesseract has no language data for {lang!r} (has {languages[1:]}): install the Debian "
                       f"package tesseract-ocr-{lang}")
    return {"tesseract": tesseract, **tools}


def page_count(pdf: Path, binaries: dict[str, str]) -> int:
    from pdf2image import pdfinfo_from_path
    from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

    try:
        return int(pdfinfo_from_path(str(pdf), poppler_path=binaries["poppler_path"])["Pages"])
    except (PDFPageCountError, PDFSyntaxError, KeyError, ValueError) as exc:
        raise OcrError(f"{pdf} is not a readable PDF ({str(exc).strip()[:200]}); ask the provider to resend it") from exc
    except PDFInfoNotInstalledError as exc:
        raise OcrError("pdfinfo is missing: install the Debian package poppler-utils") from exc


@dataclass(frozen=True)
class ScanImage:
    """A page that is one full-page image (a scan): its pixels can be taken as they are stored."""

    ppi: float


def scanned_pages(pdf: Path, pages: list[int], binaries: dict[str, str]) -> dict[int, ScanImage]:
    """Pages holding exactly one image that fills the page, upright (pdfimages -list, pdfinfo): those are
    decoded straight from the file instead of rendered, which is cheaper and loses nothing."""
    listing = subprocess.run([binaries["pdfimages"], "-list", "-f", str(min(pages)), "-l", str(max(pages)), str(pdf)],
                             capture_output=True, text=True, errors="replace").stdout
    info = subprocess.run([binaries["pdfinfo"], "-f", str(min(pages)), "-l", str(max(pages)), str(pdf)],
                          capture_output=True, text=True, errors="replace").stdout
    sizes = {int(m.group(1)): (float(m.group(2)), float(m.group(3)))
             for m in re.finditer(r"^Page\s+(\d+) size:\s+([\d.]+) x ([\d.]+)", info, re.MULTILINE)}
    rotated = {int(m.group(1)) for m in re.finditer(r"^Page\s+(\d+) rot:\s+(\d+)", info, re.MULTILINE)
               if int(m.group(2)) % 360}
    images: dict[int, list[tuple[int, int, float, float]]] = {}
    for line in listing.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 14 and parts[0].isdigit():
            if parts[2] != "image":
                images.setdefault(int(parts[0]), []).append((0, 0, 0.0, 0.0))  # a mask: not a plain scan
                continue
            try:
                images.setdefault(int(parts[0]), []).append((int(parts[3]), int(parts[4]), float(parts[12]),
                                                             float(parts[13])))
            except ValueError:
                continue
    found = {}
    for page, found_images in images.items():
        if page not in pages or len(found_images) != 1 or page in rotated or page not in sizes:
            continue
        width, height, x_ppi, y_ppi = found_images[0]
        page_width, page_height = sizes[page]
        fills = width and abs(width / x_ppi * 72 - page_width) < 2 and abs(height / y_ppi * 72 - page_height) < 2
        if fills and abs(x_ppi - y_ppi) < 1:
            found[page] = ScanImage(x_ppi)
    return found


# ---------------------------------------------------------------- the text layer


def text_layer(pdf: Path, binaries: dict[str, str], pages: list[int]) -> dict[int, list[Word]]:
    """Words with boxes from the PDF's text layer, per page; pages without text are absent."""
    done = subprocess.run([binaries["pdftotext"], "-bbox", "-f", str(min(pages)), "-l", str(max(pages)), str(pdf),
                           "-"], capture_output=True)
    if done.returncode != 0:
        return {}
    try:
        root = ElementTree.fromstring(done.stdout)
    except ElementTree.ParseError:
        return {}
    found: dict[int, list[Word]] = {}
    for offset, page in enumerate(root.iter("{http://www.w3.org/1999/xhtml}page")):
        number = min(pages) + offset
        words = [Word((w.text or "").strip(), float(w.get("xMin")), float(w.get("yMin")), float(w.get("xMax")),
                      float(w.get("yMax")), 100.0)
                 for w in page.iter("{http://www.w3.org/1999/xhtml}word") if (w.text or "").strip()]
        if number in pages and any(any(c.isalnum() for c in w.text) for w in words):
            found[number] = words
    return found


# ---------------------------------------------------------------- image pages


def extract_scans(pdf: Path, pages: list[int], folder: Path, binaries: dict[str, str]) -> dict[int, Path]:
    """The stored image of each scanned page (pdfimages: JPEG kept as it is, others as PNM)."""
    prefix = folder / f"scan-{min(pages)}"
    subprocess.run([binaries["pdfimages"], "-j", "-p", "-f", str(min(pages)), "-l", str(max(pages)), str(pdf),
                    str(prefix)], capture_output=True)
    found = {int(m.group(1)): path for path in folder.glob(f"{prefix.name}-*")
             if (m := re.search(r"-(\d+)-\d+\.\w+$", path.name))}
    return {page: found[page] for page in pages if page in found}


def render_pages(pdf: Path, pages: list[int], dpi: int, folder: Path, binaries: dict[str, str]) -> dict[int, Path]:
    """Gray page images (PGM files in folder) of a run of pages, one pdftoppm call (pdf2image)."""
    from pdf2image import convert_from_path
    from pdf2image.exceptions import PDFPageCountError, PDFSyntaxError

    try:
        paths = convert_from_path(str(pdf), dpi=dpi, first_page=min(pages), last_page=max(pages), grayscale=True,
                                  fmt="ppm", output_folder=str(folder), paths_only=True,
                                  output_file=f"render-{dpi}-{min(pages)}-", poppler_path=binaries["poppler_path"])
    except (PDFPageCountError, PDFSyntaxError) as exc:
        raise OcrError(f"{pdf}: Poppler could not render pages {min(pages)}-{max(pages)} "
                       f"({str(exc).strip()[:200]}); ask the provider to resend it") from exc
    numbered = dict(zip(range(min(pages), max(pages) + 1), sorted(paths), strict=False))
    return {page: Path(numbered[page]) for page in pages if page in numbered}


def otsu_threshold(histogram) -> int:
    """The gray level that best separates ink from paper (Otsu), from a 256-bin histogram."""
    import numpy as np

    histogram = np.asarray(histogram, dtype=np.float64)
    levels = np.arange(256)
    weight_dark = np.cumsum(histogram)
    weight_light = weight_dark[-1] - weight_dark
    mean_dark = np.cumsum(histogram * levels) / np.maximum(weight_dark, 1)
    mean_light = ((histogram * levels).sum() - np.cumsum(histogram * levels)) / np.maximum(weight_light, 1)
    between = weight_dark * weight_light * (mean_dark - mean_light) ** 2
    return int(np.argmax(between))


def skew_angle(ink_small) -> float:
    """The rotation that makes text rows level (sharpest row profile), searched coarse then fine
    over -3.5..3.5 degrees on a reduced ink mask."""
    import numpy as np

    def sharpness(angle: float) -> float:
        profile = np.asarray(ink_small.rotate(angle, fillcolor=0)).sum(axis=1, dtype=np.float64)
        return float(np.square(np.diff(profile)).sum())

    coarse = max(np.arange(-3.5, 3.51, 0.5), key=lambda a: sharpness(float(a)))
    fine = max(np.arange(coarse - 0.4, coarse + 0.41, 0.1), key=lambda a: sharpness(float(a)))
    return round(float(fine), 2)


# Tesseract follows text lines up to this skew by itself and reads them better unrotated than after
# the resampling a rotation needs (measured: 'T' ids read as '7' four times as often after it).
MAX_UNROTATED_SKEW = 0.5
PAPER_LEVEL = 200  # gray levels above this are paper, whatever Otsu says


def clean_page(image):
    """(gray image, skew in degrees): a 3x3 box blur takes out single-pixel speckle (a median filter does
    the same at eight times the cost) and keeps the gray levels Tesseract thresholds best itself; a page
    skewed beyond MAX_UNROTATED_SKEW is turned level (bilinear)."""
    from PIL import Image, ImageFilter

    gray = image.convert("L").filter(ImageFilter.BoxBlur(1))
    threshold = otsu_threshold(gray.histogram())
    angle = skew_angle(gray.reduce(4).point(lambda v: 255 if v < threshold else 0))
    # Paper goes white and ink keeps its gray edges. The cap matters on a page with no ink, where Otsu
    # splits the paper's own noise and Tesseract would read blurred specks as letters.
    paper = min(threshold, PAPER_LEVEL)
    gray = gray.point(lambda v: v if v < paper else 255)
    if abs(angle) > MAX_UNROTATED_SKEW:
        gray = gray.rotate(angle, fillcolor=255, resample=Image.BILINEAR)
        return gray, angle
    return gray, 0.0


def prepare_image_page(source: Path, scale: float = 1.0, dpi: int = 300) -> tuple[Path, float, Any]:
    """Clean a page image (resized by scale first) into a PGM beside it, its rules removed; returns
    (path, skew, batchops.ocr.rules.Rules)."""
    from PIL import Image

    from batchops.ocr.rules import find_and_remove_rules

    with Image.open(source) as image:
        if abs(scale - 1.0) > 0.01:
            image = image.convert("L").resize((round(image.width * scale), round(image.height * scale)),
                                              Image.BILINEAR)
        cleaned, angle = clean_page(image)
    cleaned, rules = find_and_remove_rules(cleaned, dpi)
    target = source.with_name(source.stem + "-clean.pgm")
    cleaned.save(target)
    return target, angle, rules


def tesseract_words(images: list[Path], lang: str, dpi: int, tesseract: str,
                    config: str = "--psm 6") -> list[list[Word]]:
    """One Tesseract process for a batch of page images (a list file), words in points per image."""
    pytesseract = import_pytesseract()

    if not images:
        return []
    pytesseract.pytesseract.tesseract_cmd = tesseract
    os.environ["OMP_THREAD_LIMIT"] = "1"  # pages run in parallel; Tesseract's own threads only slow that down
    list_file = images[0].with_suffix(".list.txt")
    list_file.write_text("".join(f"{path}\n" for path in images))
    data = pytesseract.image_to_data(str(list_file), lang=lang, config=f"{config} --dpi {dpi}",
                                     output_type=pytesseract.Output.DICT)
    scale = POINTS_PER_INCH / dpi
    pages: list[list[Word]] = [[] for _ in images]
    for i, text in enumerate(data["text"]):
        text = str(text).strip()
        if not text or float(data["conf"][i]) < 0:
            continue
        left, top = data["left"][i] * scale, data["top"][i] * scale
        pages[int(data["page_num"][i]) - 1].append(
            Word(text, left, top, left + data["width"][i] * scale, top + data["height"][i] * scale,
                 float(data["conf"][i]), (data["block_num"][i], data["par_num"][i], data["line_num"][i])))
    return pages


def reread_cells(crops: dict[int, tuple[Path, int, tuple[float, float, float, float]]], whitelist: str | None,
                 lang: str, tesseract: str, twice: set[int] | None = None) -> dict[int, list[tuple[str, float]]]:
    """Read many cells of one column again in one Tesseract call: their crops ({key: (page image, its dpi,
    box in points)}, from any pages) stacked into one strip, with the column's character whitelist; the
    keys in `twice` also enlarged by half, a second reading Tesseract makes independently.
    Returns {key: [(text, confidence) of each reading that found text]}."""
    from PIL import Image

    pytesseract = import_pytesseract()
    if not crops:
        return {}
    gap = 40
    pieces, images = [], {}
    try:
        for key, (path, dpi, box) in crops.items():
            if path not in images:
                images[path] = Image.open(path)
            scale = dpi / POINTS_PER_INCH
            piece = images[path].crop(tuple(int(round(v * scale)) for v in box))
            if dpi != 300:  # one strip, one scale: Tesseract is told 300 dpi
                piece = piece.resize((round(piece.width * 300 / dpi), round(piece.height * 300 / dpi)))
            enlarged = piece.resize((round(piece.width * 1.5), round(piece.height * 1.5)), Image.BILINEAR)
            if twice and key in twice:
                pieces.append((key, piece))
            pieces.append((key, enlarged))
    finally:
        for image in images.values():
            image.close()
    width = max(piece.width for _, piece in pieces) + 2 * gap
    strip = Image.new("L", (width, sum(p.height + gap for _, p in pieces) + gap), 255)
    offsets, y = [], gap
    for index, (key, piece) in enumerate(pieces):
        strip.paste(piece, (gap, y))
        offsets.append((index, key, y, y + piece.height))
        y += piece.height + gap
    pytesseract.pytesseract.tesseract_cmd = tesseract
    config = "--psm 6 --dpi 300" + (f" -c tessedit_char_whitelist={whitelist}" if whitelist else "")
    data = pytesseract.image_to_data(strip, lang=lang, config=config, output_type=pytesseract.Output.DICT)
    found: dict[int, list[tuple[int, str, float]]] = {}
    for text, conf, left, top, height in zip(data["text"], data["conf"], data["left"], data["top"], data["height"],
                                             strict=True):
        text = str(text).strip()
        if not text or float(conf) < 0:
            continue
        middle = top + height / 2
        for index, _, start, stop in offsets:
            if start - gap / 2 <= middle <= stop + gap / 2:
                found.setdefault(index, []).append((left, text, float(conf)))
                break
    readings: dict[int, list[tuple[str, float]]] = {}
    for index, key, _, _ in offsets:
        if index in found:
            words = sorted(found[index])
            readings.setdefault(key, []).append((" ".join(t for _, t, _ in words), min(c for _, _, c in words)))
    return readings


# A page read with this little confidence (or with ink but hardly a word) may be sideways or upside down.
ORIENTATION_CHECK_CONFIDENCE = 55.0


def looks_unreadable(words: list[Word], image: Path) -> bool:
    """Few words, or words read with low confidence, on a page with ink: the cue to ask Tesseract which way up
    it is (asking on every page would cost a second pass)."""
    if words and len(words) >= 15 and sum(w.confidence for w in words) / len(words) >= ORIENTATION_CHECK_CONFIDENCE:
        return False
    from PIL import Image

    with Image.open(image) as page:
        small = page.convert("L").reduce(4)
        dark = sum(small.histogram()[:128])
    return dark > 0.004 * small.width * small.height


def page_rotation(image: Path, tesseract: str) -> int:
    """Degrees the page must turn (clockwise) to stand upright, by Tesseract's orientation detection (needs
    the osd language data, Debian's tesseract-ocr-osd); 0 when it is upright or cannot tell."""
    pytesseract = import_pytesseract()
    pytesseract.pytesseract.tesseract_cmd = tesseract
    try:
        found = pytesseract.image_to_osd(str(image), config="--psm 0")
    except pytesseract.TesseractError:
        return 0
    match = re.search(r"Rotate: (\d+)", found)
    confidence = re.search(r"Orientation confidence: ([\d.]+)", found)
    if not match or (confidence and float(confidence.group(1)) < 1.0):
        return 0
    return int(match.group(1)) % 360


def turned_copy(source: Path, degrees: int) -> Path:
    """The page image turned clockwise by `degrees`, beside the source."""
    from PIL import Image

    target = source.with_name(f"{source.stem}-turned{degrees}{source.suffix}")
    with Image.open(source) as image:
        image.rotate(-degrees, expand=True).save(target)
    return target
