#!/usr/bin/env bash
# The OS packages the tests need: Tesseract (+ English and orientation data) and Poppler for OCR, DejaVu fonts for
# the scans the tests draw, Debian's chromium for the browser tests. Installs the missing ones with apt-get
# (as root, or through sudo without a password); does nothing when all are there.
set -euo pipefail
PACKAGES=(tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd poppler-utils fonts-dejavu-core chromium)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "error: the OS packages ${missing[*]} are missing and this machine has no apt-get; install their" \
       "equivalents (Tesseract with English and OSD data, Poppler utils, DejaVu fonts, Chromium) and run again" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: the OS packages ${missing[*]} are missing; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing OS packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
