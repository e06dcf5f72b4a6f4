// Builds one JavaScript guest into a component. `dohost build` writes this
// script, the SDK and the WIT contract under the project's
// node_modules/.cache/dohost and runs it with node, so `esbuild` and
// `@bytecodealliance/componentize-js` resolve from the project's node_modules.
//
//   node build.mjs ENTRY SDK_MODULE HANDLER WORLD WIT_DIR OUT_DIR
//
// ENTRY is the guest's module, SDK_MODULE the SDK file the guest's
// `import ... from "dohost"` resolves to, HANDLER the SDK function that
// makes the world's export from the module (objectHandler or
// workerHandler). The output is one JSON line: {"wasm", "bytes", "cached"}.
// The component is named by a hash of the bundled code, this script (and
// so the glue and engine edits below), the world and the contract, so an
// unchanged guest is not componentized again; the module's older
// components are removed.
//
// componentize-js generates JavaScript glue between the component's
// imports and exports and the guest's code; `fasterGlue` below edits the
// parts of it that cost much of each event in the engine's interpreter
// (encoding strings, reading memory, awaiting a handler that returned no
// promise), and makes it free the memory an import's arguments took.
// And `quietEngine` builds on a copy of its engine that records async
// stacks only under a debugger, as Firefox does.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { componentize, version } from "@bytecodealliance/componentize-js";

/** A file of the componentize-js package, by its path from the package's entry module. */
const packageFile = (path) => new URL(path, import.meta.resolve("@bytecodealliance/componentize-js"));

// componentize-js 0.23.0's glue encodes every string it passes to the host
// with a loop over its characters in JavaScript, to size the allocation
// first: about 2,700 wasm instructions per character on the interpreter, a
// sixth of a hot counter request. The engine's TextEncoder does the same
// natively (lone surrogates become U+FFFD either way); the glue's own
// function stays, renamed and no longer called.
const ENCODE = "function _utf8AllocateAndEncode(s, realloc, memory) {";
const FAST_ENCODE = `function _utf8AllocateAndEncode(s, realloc, memory) {
  if (typeof s !== "string") throw new TypeError("expected a string, received [" + typeof s + "]");
  if (s.length === 0) return { ptr: 1, len: 0 };
  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const ptr = realloc(0, 0, 1, bytes.length);
  new Uint8Array(memory.buffer, ptr, bytes.length).set(bytes);
  return { ptr, len: bytes.length };
}
function _utf8AllocateAndEncodeInJavaScript(s, realloc, memory) {`;

// The glue reads and writes every field in the guest's memory through
// `dataView($memory)`, a call that checks whether the memory has grown by
// reading two `buffer` getters: about 4,000 instructions per field, some
// 90,000 of a `stub.fetch`. The check stays, inline, against the buffer
// the current DataView was made on.
const DATA_VIEW = `let dv = new DataView(new ArrayBuffer());
const dataView = mem => dv.buffer === mem.buffer ? dv : dv = new DataView(mem.buffer);`;
const FAST_DATA_VIEW = `let dv = new DataView(new ArrayBuffer());
let dvBuffer = dv.buffer;
const dataView = mem => dv = new DataView(dvBuffer = mem.buffer);`;

// The glue lowers an import's arguments (strings, lists) into memory it
// takes with `$realloc`, and never gives that memory back: a worker that
// forwarded requests with `stub.fetch` kept every request's headers, until
// it reached its memory limit and trapped. In the import functions the
// allocations are now noted and freed when the host call returns: the host
// has read the arguments by then.
const IMPORT_ARGUMENTS = `
const _importArguments = [];
function _importRealloc(old, oldSize, align, size) {
  const ptr = $realloc(old, oldSize, align, size);
  if (size !== 0) _importArguments.push(ptr);
  return ptr;
}
function _freeImportArguments() {
  for (let i = 0; i < _importArguments.length; i++) $dealloc(_importArguments[i]);
  _importArguments.length = 0;
}
`;

// Every export function awaits what the module's handler returned, and so
// ends a microtask later even when that is no promise, as the SDK's
// handlers' results never are: the await suspends the export's async function
// and resumes it from a promise job, some 4,000 instructions per call
// (12,000 of a hot fetch event). The result is now awaited only when it
// is a thenable; the engine still runs every microtask before the call
// returns.
const EXPORT_AWAIT = /^(\s*)(ret|const hostRet\d+) = await ([A-Za-z_$][\w$]*\([\s\S]*?\));$/gm;

/** The export functions, awaiting their handler's result only when it is a thenable. */
function awaitOnlyThenables(glue) {
  return glue.replace(EXPORT_AWAIT, (_, indent, target, call) => {
    const name = target.replace(/^const /, "");
    const declare = target.startsWith("const ") ? `let ${name}` : name;
    return (
      `${indent}${declare} = ${call};\n` +
      `${indent}if (${name} !== null && (typeof ${name} === "object" || typeof ${name} === "function") && typeof ${name}.then === "function") ${name} = await ${name};`
    );
  });
}

/** Each import function or imported resource class, up to its closing brace. */
const IMPORT_BLOCK = /^(?:function|class) import_[\s\S]*?^}$/gm;
/**
 * The host call in an import function, with a result (`ret = ...`) or
 * without one (`finish-fetch`): the arguments of both are freed at once,
 * within the export call that made them. Freed later, they would be freed
 * after the engine has reused their memory.
 */
const IMPORT_CALL = /^([ \t]*)((?:ret = )?\$import_.*;)$/gm;

/** The import functions, taking their arguments' memory from `_importRealloc` and freeing it after the call. */
function freeImportArguments(glue) {
  return glue.replace(IMPORT_BLOCK, (block) =>
    block.replaceAll("$realloc", "_importRealloc").replace(IMPORT_CALL, "$1$2\n$1_freeImportArguments();"),
  );
}

/**
 * The glue with the faster string encoding and memory access, freeing its
 * imports' arguments (see IMPORT_ARGUMENTS), and with its
 * `_debugLog(...)` statements (which log only under node with JCO_DEBUG
 * set, never in the engine) no longer building their arguments on every
 * call. Glue of another shape is left as it is, with a warning.
 */
function fasterGlue(glue) {
  if (
    glue.split(ENCODE).length !== 2 ||
    glue.split(DATA_VIEW).length !== 2 ||
    glue.search(IMPORT_CALL) < 0 ||
    !glue.includes("const TEXT_ENCODER_UTF8 = new TextEncoder();") ||
    (glue.match(/ = await /g) ?? []).length !== (glue.match(EXPORT_AWAIT) ?? []).length
  ) {
    console.error(`dohost: the glue of componentize-js ${version} is not the one dohost speeds up; building it as it is`);
    return glue;
  }
  return awaitOnlyThenables(freeImportArguments(glue))
    .replace(ENCODE, () => FAST_ENCODE)
    .replace(DATA_VIEW, () => FAST_DATA_VIEW + IMPORT_ARGUMENTS)
    .replaceAll("dataView($memory)", "($memory.buffer === dvBuffer ? dv : dataView($memory))")
    .replace(/^(\s*)_debugLog\(/gm, (_, indent) => `${indent}0 && _debugLog(`);
}

// StarlingMonkey, the engine componentize-js 0.23.0 ships, leaves
// SpiderMonkey's `asyncStack` option on: every promise the guest creates
// and every one it resolves records the whole JavaScript stack, for the
// "async*" frames of error stacks. That is about 45% of the work of
// constructing an object on a fresh instance, and the engine offers no
// setting for it. The option's companion, `asyncStackCaptureDebuggeeOnly`
// (Firefox's default), records them only while a debugger watches the
// realm; turning it on is one constant in the engine's code, the
// ContextOptions `JS_NewContext` gives the context: `i32.const 1295`
// becomes `i32.const 1807` (bit 9 added, same length). The edit is made
// only on the exact engine it was worked out on.
const ENGINE = {
  file: "../lib/starlingmonkey_embedding.wasm",
  sha256: "6094cd93d966f9bec9b01332db6e0eedbaf22f60b745c9f823f21e33cbd4d365",
  at: 2286151,
  stock: [0x41, 0x8f, 0x0a],
  edited: [0x41, 0x8f, 0x0e],
};

/**
 * The path of the engine with async stacks recorded only under a debugger,
 * written into `dir` once; undefined (with a warning) when componentize-js's
 * engine is not the one this edit is for.
 */
function quietEngine(dir) {
  const stock = readFileSync(fileURLToPath(packageFile(ENGINE.file)));
  const sha256 = createHash("sha256").update(stock).digest("hex");
  const at = stock.subarray(ENGINE.at, ENGINE.at + ENGINE.stock.length);
  if (sha256 !== ENGINE.sha256 || !at.equals(Buffer.from(ENGINE.stock))) {
    console.error(`dohost: the engine of componentize-js ${version} is not the one dohost edits; its promises record async stacks`);
    return undefined;
  }
  const path = join(dir, `engine-${sha256.slice(0, 16)}-async-stacks-debuggee-only.wasm`);
  if (!existsSync(path)) {
    const edited = Buffer.from(stock);
    edited.set(ENGINE.edited, ENGINE.at);
    writeFileSync(`${path}.${process.pid}.tmp`, edited);
    renameSync(`${path}.${process.pid}.tmp`, path);
  }
  return path;
}

// The glue generator, through the object componentize() calls it on.
const splicer = await import(
  packageFile("../lib/spidermonkey-embedding-splicer.js").href
).then((m) => m.splicer, () => undefined);
if (typeof splicer?.spliceBindings === "function") {
  const generate = splicer.spliceBindings;
  splicer.spliceBindings = (...args) => {
    const spliced = generate(...args);
    return { ...spliced, jsBindings: fasterGlue(spliced.jsBindings) };
  };
} else {
  console.error(`dohost: cannot reach the glue generator of componentize-js ${version}; building its glue as it is`);
}

const [entry, sdkModule, handler, world, witDir, outDir] = process.argv.slice(2);
const exportName = { objectHandler: "handler", workerHandler: "workerHandler" }[handler];

// The `node:` modules Workers offer with nodejs_compat that objects
// commonly use, from maintained polyfills (and crypto and process from the
// SDK); also under their bare names, as npm packages require them.
const sdkDir = dirname(sdkModule);
const NODE_MODULES = {
  assert: "assert/",
  buffer: "buffer/",
  crypto: join(sdkDir, "node/crypto.js"),
  events: "events/",
  path: "path-browserify",
  process: join(sdkDir, "node/process.js"),
  util: "util/",
};
const alias = { dohost: sdkModule, "cloudflare:workers": sdkModule };
for (const [name, target] of Object.entries(NODE_MODULES)) {
  alias[`node:${name}`] = target;
  alias[name] = target;
}

const bundle = await build({
  stdin: {
    contents: [
      `import * as app from ${JSON.stringify(entry)};`,
      `import { ${handler} as makeExport } from "dohost";`,
      `const made = makeExport(app);`,
      `export { made as ${exportName} };`,
    ].join("\n"),
    resolveDir: process.cwd(),
    sourcefile: "dohost-entry.js",
  },
  bundle: true,
  format: "esm",
  platform: "neutral",
  // Packages without "exports" (the node: polyfills among them) by their
  // "module" or "main", as a bundler for the web resolves them.
  mainFields: ["module", "main"],
  target: "es2022",
  write: false,
  logLevel: "error",
  alias,
  // `process` and `Buffer` where code names them without importing them.
  inject: [join(sdkDir, "node/globals.js")],
  // wrangler's default module rules: .html and .txt import as text.
  loader: { ".html": "text", ".txt": "text" },
  external: ["dohost:*"],
});
const code = bundle.outputFiles[0].text;

mkdirSync(outDir, { recursive: true });
const engine = quietEngine(outDir);

const hash = createHash("sha256");
hash.update(`componentize-js ${version}\0${world}\0`);
hash.update(readFileSync(fileURLToPath(import.meta.url)));
hash.update(engine ? "edited engine" : "stock engine");
for (const name of readdirSync(witDir).sort()) hash.update(readFileSync(join(witDir, name)));
hash.update(code);
const key = hash.digest("hex").slice(0, 32);

// Named after the module and its path, so the builds of one module replace
// each other and those of other modules stay.
const module = `${world}-${basename(entry).replace(/\.[cm]?[jt]sx?$/, "")}-${createHash("sha256").update(entry).digest("hex").slice(0, 8)}-`;
const wasm = join(outDir, `${module}${key}.wasm`);
let cached = true;
if (!existsSync(wasm)) {
  cached = false;
  const source = join(outDir, `${module}${key}.js`);
  writeFileSync(source, code);
  const { component } = await componentize({
    sourcePath: source,
    witPath: witDir,
    worldName: world,
    // The host provides no wasi:http; requests arrive through dohost's handler.
    disableFeatures: ["http", "fetch-event"],
    ...(engine && { engine }),
  });
  writeFileSync(`${wasm}.${process.pid}.tmp`, component);
  renameSync(`${wasm}.${process.pid}.tmp`, wasm);
  for (const old of readdirSync(outDir)) {
    if (old.startsWith(module) && !old.startsWith(`${module}${key}.`)) rmSync(join(outDir, old), { force: true });
  }
}
console.log(JSON.stringify({ wasm, bytes: readFileSync(wasm).length, cached }));
