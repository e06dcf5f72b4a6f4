#!/usr/bin/env bash
# Builds counter.wasm, the C Counter object, by hand: bindings from the WIT
# contract, a core module from clang, a component from wasm-tools.
#
#   ./build.sh            writes counter.wasm here; OUT=DIR ./build.sh writes DIR/counter.wasm
#
# Needs (see README.md): Debian's clang, lld, wasi-libc and
# libclang-rt-14-dev-wasm32; `cargo install --locked wit-bindgen-cli@0.63.0
# wasm-tools@1.262.0`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="${OUT:-$here}"
gen="$out/gen"
mkdir -p "$gen"

# 1. The C bindings of the world durable-object: durable_object.h and .c,
#    and durable_object_component_type.o, which carries the world's types
#    into the module for step 3.
wit-bindgen c --world durable-object --out-dir "$gen" "$wit"

# 2. A core module for wasm32-wasi in reactor mode (no main; the host calls
#    the exports). The code calls no WASI function, so the module imports
#    only the dohost interfaces.
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror \
  -I "$gen" -o "$out/counter.core.wasm" \
  "$here/counter.c" "$gen/durable_object.c" "$gen/durable_object_component_type.o"

# 3. The component: the core module wrapped with the types from step 1. A
#    module importing WASI preview 1 would need `--adapt` with the preview-1
#    adapter here; this one has no such import.
wasm-tools component new "$out/counter.core.wasm" -o "$out/counter.wasm"
wasm-tools validate "$out/counter.wasm"
echo "built $out/counter.wasm"
