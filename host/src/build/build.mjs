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
// The component is named by a hash of the bundled code, the world and the
// contract, so an unchanged guest is not componentized again; the module's
// older components are removed.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { build } from "esbuild";
import { componentize, version } from "@bytecodealliance/componentize-js";

const [entry, sdkModule, handler, world, witDir, outDir] = process.argv.slice(2);
const exportName = { objectHandler: "handler", workerHandler: "workerHandler" }[handler];

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
  target: "es2022",
  write: false,
  logLevel: "error",
  alias: { dohost: sdkModule, "cloudflare:workers": sdkModule },
  external: ["dohost:*"],
});
const code = bundle.outputFiles[0].text;

const hash = createHash("sha256");
hash.update(`componentize-js ${version}\0${world}\0`);
for (const name of readdirSync(witDir).sort()) hash.update(readFileSync(join(witDir, name)));
hash.update(code);
const key = hash.digest("hex").slice(0, 32);

// Named after the module and its path, so the builds of one module replace
// each other and those of other modules stay.
const module = `${world}-${basename(entry).replace(/\.m?js$/, "")}-${createHash("sha256").update(entry).digest("hex").slice(0, 8)}-`;
mkdirSync(outDir, { recursive: true });
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
  });
  writeFileSync(`${wasm}.${process.pid}.tmp`, component);
  renameSync(`${wasm}.${process.pid}.tmp`, wasm);
  for (const old of readdirSync(outDir)) {
    if (old.startsWith(module) && !old.startsWith(`${module}${key}.`)) rmSync(join(outDir, old), { force: true });
  }
}
console.log(JSON.stringify({ wasm, bytes: readFileSync(wasm).length, cached }));
