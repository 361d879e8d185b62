#!/usr/bin/env bash
# Builds the browser's effects (docs/browser-effects.md) with Emscripten into api/static/wasm/:
#   cutout-effects.<hash>.wasm   the module (wasm/effects_processor.cpp)
#   cutout-effects.<hash>.js     the ES-module wrapper (wasm/cutout-effects.js), naming that .wasm
#   manifest.json                {"module": ..., "wasm": ...}: where the page finds them
# Names carry a hash of their content, so the API can serve them as immutable.
# Usage: wasm/build.sh [output directory]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../api/static/wasm}
# Debian's emcc runs its JavaScript tools with node and finds acorn in Debian's node tree.
export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -ffp-contract=off: no fused multiply-add, every operation rounds as the server's do.
# STANDALONE_WASM: a module with two trivial imports, which the wrapper provides itself.
emcc -std=c++17 -O3 -ffp-contract=off -fno-exceptions -fno-rtti \
  -sSTANDALONE_WASM --no-entry -sALLOW_MEMORY_GROWTH -sINITIAL_MEMORY=16MB \
  -sEXPORTED_FUNCTIONS=_cutout_alloc,_cutout_free,_cutout_enhancedblackwhite,_cutout_popart,_cutout_dithering \
  "$here/effects_processor.cpp" -o "$tmp/cutout-effects.wasm"

hash_of() { sha256sum "$1" | cut -c1-16; }
wasm="cutout-effects.$(hash_of "$tmp/cutout-effects.wasm").wasm"
sed "s/^const WASM_FILE = \"cutout-effects.wasm\";/const WASM_FILE = \"$wasm\";/" \
  "$here/cutout-effects.js" > "$tmp/cutout-effects.js"
grep -q "\"$wasm\"" "$tmp/cutout-effects.js" || { echo "build.sh: WASM_FILE not found" >&2; exit 1; }
module="cutout-effects.$(hash_of "$tmp/cutout-effects.js").js"

mkdir -p "$out"
rm -f "$out"/cutout-effects.*.wasm "$out"/cutout-effects.*.js
cp "$tmp/cutout-effects.wasm" "$out/$wasm"
cp "$tmp/cutout-effects.js" "$out/$module"
printf '{"module": "%s", "wasm": "%s"}\n' "$module" "$wasm" > "$tmp/manifest.json"
mv "$tmp/manifest.json" "$out/manifest.json"
echo "built $out/$module and $out/$wasm"
