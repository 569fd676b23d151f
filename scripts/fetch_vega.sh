#!/usr/bin/env bash
# Writes .dvc/plots/offline.html: the HTML template of `dvc plots show` / `dvc plots diff`
# (.dvc/config: plots.html_template) with Vega, Vega-Lite and Vega-Embed inlined, so the page
# draws its plots with no network. DVC's own page loads them from cdn.jsdelivr.net.
#
#     bash scripts/fetch_vega.sh [OUT]    (default OUT: .dvc/plots/offline.html)
#
# Needs npm and the npm registry. The versions are pinned and each tarball's sha256 is
# checked, so a rerun writes the same bytes. Versions: the v5 Vega-Lite schema the plot
# template .dvc/plots/history.json names ("$schema": .../vega-lite/v5.json), vega 5 (which
# vega-lite 5.23 asks for: ^5.24.0) and vega-embed 6 (vega ^5.21.0, any vega-lite). To move to
# newer ones: change a version below, run with VEGA_UPDATE_SHA=1 to print the new tarball
# hashes, check them against `npm view PKG@VERSION dist.integrity`, paste them here, rerun.
#
# The page is DVC's default page (dvc_render/html.py's PAGE_HTML) with the three minified
# browser builds in <script> tags where DVC puts its CDN <script src=...> tags, and no
# {scripts} placeholder: DVC would fill one with those CDN tags. Each inlined script starts
# with its package's license (all three: BSD-3-Clause, University of Washington Interactive
# Data Lab).
set -euo pipefail

# package version sha256-of-the-npm-tarball build-file
PINS=(
    "vega 5.33.1 1b8504b6731c5311be3269c4d84ca996a5cc293bc772283293ede20c490e16c3 build/vega.min.js"
    "vega-lite 5.23.0 e4cbfdd8f6f1abe381c59cd558fd6a559c12b1496bfdf2e0c3295263a40fe4da build/vega-lite.min.js"
    "vega-embed 6.29.0 ecf1ee709c2bac9e0a4ead6908114b05b62c71493e10a8a4308109bb070f8eb1 build/vega-embed.min.js"
)

# The vega tarball has no LICENSE file (package.json: "license": "BSD-3-Clause"); this is the
# LICENSE of its repository, github.com/vega/vega.
VEGA_REPO_LICENSE='Copyright (c) 2015-2023, University of Washington Interactive Data Lab
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

3. Neither the name of the copyright holder nor the names of its contributors
  may be used to endorse or promote products derived from this software
  without specific prior written permission.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT OWNER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.'

die() {
    echo "error: $*" >&2
    exit 1
}

cd "$(dirname "$0")/.."
OUT=${1:-.dvc/plots/offline.html}
command -v npm >/dev/null || die "npm not found (it fetches the pinned packages from the npm registry)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

scripts=""
for pin in "${PINS[@]}"; do
    read -r name version sha256 build <<<"$pin"
    dir="$TMP/$name"
    mkdir -p "$dir"
    # npm checks the registry's sha512 integrity; the sha256 below pins the bytes.
    tarball=$(cd "$dir" && npm pack --silent "$name@$version")
    actual=$(sha256sum "$dir/$tarball" | cut -d' ' -f1)
    if [ "${VEGA_UPDATE_SHA:-0}" = 1 ]; then
        echo "$name $version $actual $build"
    elif [ "$actual" != "$sha256" ]; then
        die "$name@$version: tarball sha256 $actual, pinned $sha256"
    fi
    tar -xzf "$dir/$tarball" -C "$dir"
    js="$dir/package/$build"
    [ -f "$js" ] || die "$name@$version: no $build in its tarball"
    if [ -f "$dir/package/LICENSE" ]; then
        license=$(cat "$dir/package/LICENSE")
    elif [ "$name" = vega ]; then
        license=$VEGA_REPO_LICENSE
    else
        die "$name@$version: no LICENSE in its tarball"
    fi
    # The build's last line, "//# sourceMappingURL=NAME.min.js.map", is dropped (no map here).
    # Inline, a script must not end its own <script> element nor open an HTML comment, and must
    # hold none of the placeholders DVC replaces in the page.
    for bad in '</script' '<!--' '{scripts}' '{plot_divs}' '{refresh_tag}'; do
        ! grep -qiF -- "$bad" "$js" || die "$name@$version: $build contains '$bad'; it cannot be inlined as is"
    done
    case "$license" in *'*/'*) die "$name@$version: its LICENSE contains '*/'" ;; esac
    scripts+="    <script>/*! $name $version (npm), $build. License:
$license
*/
$(sed '$ s|^//# sourceMappingURL=.*$||' "$js")
</script>
"
done
[ "${VEGA_UPDATE_SHA:-0}" = 0 ] || exit 0

mkdir -p "$(dirname "$OUT")"
{
    cat <<'HEAD'
<!DOCTYPE html>
<html>
<head>
    <!-- dvc plots show / dvc plots diff template (.dvc/config: plots.html_template), written
         by scripts/fetch_vega.sh: Vega, Vega-Lite and Vega-Embed inlined, no network needed. -->
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
HEAD
    printf '%s' "$scripts"
    cat <<'TAIL'
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
TAIL
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT ($(wc -c <"$OUT") bytes, sha256 $(sha256sum "$OUT" | cut -d' ' -f1))"
