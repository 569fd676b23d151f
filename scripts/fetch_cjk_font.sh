#!/usr/bin/env bash
# Writes src/medsft/report/fonts/: NotoSansSC-subset.otf, the Simplified Chinese font the
# report's zh figures are drawn with (medsft.report.plots), its licence OFL.txt and README.md.
# matplotlib's bundled DejaVu Sans has no CJK glyphs, and neither this machine nor CI has a
# CJK system font, so the package carries one, cut down to the characters its figures use.
#
#     bash scripts/fetch_cjk_font.sh [OUT_DIR]    (default OUT_DIR: src/medsft/report/fonts)
#
# Rerun it after adding or changing a figure label (a "fig_" key of
# src/medsft/report/labels.py's LABELS): tests/test_report_fonts.py fails until the subset
# holds every character of every such label.
#
# Needs the project's virtual environment (python with medsft and fontTools, which matplotlib
# depends on; `python -m fontTools.subset` is pyftsubset) and pip with PyPI. The font is
# Noto Sans CJK SC Regular 1.004 (Adobe/Google, SIL Open Font License 1.1) as the PyPI wheel
# mplfonts==0.0.11 carries it (mplfonts/fonts/NotoSansCJKsc-Regular.otf, 16 MB). The wheel is
# pinned by its sha256, and with the same fontTools a rerun writes the same bytes. To move to
# another wheel: change WHEEL_VERSION, run with CJK_FONT_UPDATE_SHA=1 to print its sha256,
# check it against PyPI's listed hash for that file, paste it here, rerun.
#
# The subset keeps the characters of every text of every "fig_" label, printable ASCII, the
# signs matplotlib writes in tick labels and offsets (− × · …) and the CJK punctuation
# （）、，：·. Its family is renamed "medsft Noto Sans SC subset": a subset is a Modified
# Version under the OFL, and a name of its own keeps matplotlib from mixing it up with a full
# Noto Sans CJK SC that a machine may have installed. The copyright and licence name records
# (name IDs 0, 13, 14) are kept in the font, and OFL.txt holds them with the licence text.
set -euo pipefail

WHEEL_NAME=mplfonts
WHEEL_VERSION=0.0.11
WHEEL_SHA256=b5e05ba7fd9a59cae48d1db41f657f50e6765e6f04b8d78504438b93a66b6e13
WHEEL_MEMBER=mplfonts/fonts/NotoSansCJKsc-Regular.otf
FAMILY="medsft Noto Sans SC subset"
POSTSCRIPT_NAME="medsftNotoSansSC-subset"
FONT_FILE=NotoSansSC-subset.otf

# The SIL Open Font License 1.1, verbatim. The wheel ships no copy of it (its own LICENSE is
# mplfonts' code licence); the font's name table names the licence (name IDs 13 and 14).
OFL_1_1='SIL OPEN FONT LICENSE Version 1.1 - 26 February 2007
-----------------------------------------------------------

PREAMBLE
The goals of the Open Font License (OFL) are to stimulate worldwide
development of collaborative font projects, to support the font
creation efforts of academic and linguistic communities, and to
provide a free and open framework in which fonts may be shared and
improved in partnership with others.

The OFL allows the licensed fonts to be used, studied, modified and
redistributed freely as long as they are not sold by themselves. The
fonts, including any derivative works, can be bundled, embedded,
redistributed and/or sold with any software provided that any reserved
names are not used by derivative works. The fonts and derivatives,
however, cannot be released under any other type of license. The
requirement for fonts to remain under this license does not apply to
any document created using the fonts or their derivatives.

DEFINITIONS
"Font Software" refers to the set of files released by the Copyright
Holder(s) under this license and clearly marked as such. This may
include source files, build scripts and documentation.

"Reserved Font Name" refers to any names specified as such after the
copyright statement(s).

"Original Version" refers to the collection of Font Software
components as distributed by the Copyright Holder(s).

"Modified Version" refers to any derivative made by adding to,
deleting, or substituting -- in part or in whole -- any of the
components of the Original Version, by changing formats or by porting
the Font Software to a new environment.

"Author" refers to any designer, engineer, programmer, technical
writer or other person who contributed to the Font Software.

PERMISSION & CONDITIONS
Permission is hereby granted, free of charge, to any person obtaining
a copy of the Font Software, to use, study, copy, merge, embed,
modify, redistribute, and sell modified and unmodified copies of the
Font Software, subject to the following conditions:

1) Neither the Font Software nor any of its individual components, in
Original or Modified Versions, may be sold by itself.

2) Original or Modified Versions of the Font Software may be bundled,
redistributed and/or sold with any software, provided that each copy
contains the above copyright notice and this license. These can be
included either as stand-alone text files, human-readable headers or
in the appropriate machine-readable metadata fields within text or
binary files as long as those fields can be easily viewed by the user.

3) No Modified Version of the Font Software may use the Reserved Font
Name(s) unless explicit written permission is granted by the
corresponding Copyright Holder. This restriction only applies to the
primary font name as presented to the users.

4) The name(s) of the Copyright Holder(s) or the Author(s) of the Font
Software shall not be used to promote, endorse or advertise any
Modified Version, except to acknowledge the contribution(s) of the
Copyright Holder(s) and the Author(s) or with their explicit written
permission.

5) The Font Software, modified or unmodified, in part or in whole,
must be distributed entirely under this license, and must not be
distributed under any other license. The requirement for fonts to
remain under this license does not apply to any document created using
the Font Software.

TERMINATION
This license becomes null and void if any of the above conditions are
not met.

DISCLAIMER
THE FONT SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO ANY WARRANTIES OF
MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT
OF COPYRIGHT, PATENT, TRADEMARK, OR OTHER RIGHT. IN NO EVENT SHALL THE
COPYRIGHT HOLDER BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY,
INCLUDING ANY GENERAL, SPECIAL, INDIRECT, INCIDENTAL, OR CONSEQUENTIAL
DAMAGES, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
FROM, OUT OF THE USE OR INABILITY TO USE THE FONT SOFTWARE OR FROM
OTHER DEALINGS IN THE FONT SOFTWARE.'

die() {
    echo "error: $*" >&2
    exit 1
}

cd "$(dirname "$0")/.."
OUT=${1:-src/medsft/report/fonts}
PYTHON=${PYTHON:-python}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (activate the project's .venv)"
"$PYTHON" -c "import fontTools.subset, medsft.report.labels" 2>/dev/null \
    || die "$PYTHON cannot import fontTools and medsft (activate the project's .venv)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. The wheel, its sha256 checked.
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "$WHEEL_NAME==$WHEEL_VERSION"
wheel=$(ls "$TMP"/"$WHEEL_NAME"-"$WHEEL_VERSION"-*.whl)
actual=$(sha256sum "$wheel" | cut -d' ' -f1)
if [ "${CJK_FONT_UPDATE_SHA:-0}" = 1 ]; then
    echo "$(basename "$wheel") $actual"
    exit 0
fi
[ "$actual" = "$WHEEL_SHA256" ] || die "$(basename "$wheel"): sha256 $actual, pinned $WHEEL_SHA256"

# 2. The font out of it, and the characters the figures need.
"$PYTHON" - "$wheel" "$WHEEL_MEMBER" "$TMP/full.otf" "$TMP/chars.txt" <<'PY'
import string
import sys
import zipfile

from medsft.report.labels import LABELS

wheel, member, font_out, chars_out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(font_out, "wb") as f:
    f.write(z.read(member))
texts = [text for key, by_lang in LABELS.items() if key.startswith("fig_") for text in by_lang.values()]
# Printable ASCII (legends: run names, "train (n=12)", "max_length = 512"; tick labels), the
# signs matplotlib writes in tick labels and offset texts, and CJK punctuation.
extra = string.printable.strip() + " " + "\u2212\u00d7\u00b7\u2026\u2013\u2014\u00b0\u00b1" + "（）、，：·"
chars = sorted(set("".join(texts) + extra) - set("\t\n\r\x0b\x0c"))
with open(chars_out, "w", encoding="utf-8") as f:
    f.write("".join(chars))
PY

# 3. The subset (pyftsubset), keeping the copyright, designer, vendor and licence names.
"$PYTHON" -m fontTools.subset "$TMP/full.otf" \
    --text-file="$TMP/chars.txt" \
    --output-file="$TMP/subset.otf" \
    --name-IDs=0,1,2,3,4,5,6,7,8,9,10,11,12,13,14 \
    --notdef-outline

# 4. Its own family name; the timestamp stays the original's (same bytes on a rerun).
"$PYTHON" - "$TMP/subset.otf" "$OUT/$FONT_FILE" "$FAMILY" "$POSTSCRIPT_NAME" "$TMP/copyright.txt" <<'PY'
import os
import sys

from fontTools.ttLib import TTFont

source, target, family, ps_name, copyright_out = sys.argv[1:]
font = TTFont(source, recalcTimestamp=False)
name = font["name"]
original = name.getDebugName(4)
for record in list(name.names):
    if record.nameID in (1, 3, 4, 6, 16, 17):
        name.removeNames(nameID=record.nameID)
for name_id, text in ((1, family), (2, "Regular"), (3, f"{ps_name};subset of {original}"), (4, family), (6, ps_name)):
    name.setName(text, name_id, 3, 1, 0x409)
cff = font["CFF "].cff
cff.fontNames = [ps_name]
top = cff.topDictIndex[0]
top.FullName = family
top.FamilyName = family
os.makedirs(os.path.dirname(target), exist_ok=True)
font.save(target)
with open(copyright_out, "w", encoding="utf-8") as f:
    f.write(f"{name.getDebugName(0)}\n\n{name.getDebugName(13)}\nLicence URL: {name.getDebugName(14)}\n")
PY

# 5. The licence and where the font came from.
font_sha=$(sha256sum "$OUT/$FONT_FILE" | cut -d' ' -f1)
fonttools_version=$("$PYTHON" -c "import fontTools; print(fontTools.version)")
{
    echo "$FONT_FILE (family \"$FAMILY\") is a subset of Noto Sans CJK SC Regular, version 1.004,"
    echo "a Modified Version of it under the SIL Open Font License 1.1, written by"
    echo "scripts/fetch_cjk_font.sh. The original's copyright and licence notice (its name table):"
    echo
    cat "$TMP/copyright.txt"
    echo
    echo "The licence, verbatim:"
    echo
    echo "-----------------------------------------------------------"
    echo "$OFL_1_1"
} >"$OUT/OFL.txt"
cat >"$OUT/README.md" <<EOF
# Fonts of the report's figures

- \`$FONT_FILE\`: family "$FAMILY", $(wc -c <"$OUT/$FONT_FILE") bytes, sha256
  \`$font_sha\`. The zh figures are drawn with it (medsft.report.plots).
- Source: Noto Sans CJK SC Regular 1.004, SIL Open Font License 1.1 (\`OFL.txt\`), the member
  \`$WHEEL_MEMBER\` of the PyPI wheel $WHEEL_NAME==$WHEEL_VERSION
  (\`$(basename "$wheel")\`, sha256 \`$WHEEL_SHA256\`).
- Subset with fontTools $fonttools_version to $(wc -m <"$TMP/chars.txt") characters: those of the figure labels (the \`fig_\` keys
  of medsft/report/labels.py), printable ASCII, tick-label signs and CJK punctuation.
- Written by \`scripts/fetch_cjk_font.sh\`; rerun it after changing a figure label.
EOF

echo "wrote $OUT/$FONT_FILE ($(wc -c <"$OUT/$FONT_FILE") bytes, sha256 $font_sha, $(wc -m <"$TMP/chars.txt") characters)"
echo "wrote $OUT/OFL.txt and $OUT/README.md (from $(basename "$wheel"), sha256 $WHEEL_SHA256; fontTools $fonttools_version)"
