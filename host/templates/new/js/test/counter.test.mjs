// The counter counts: starts `dohost serve` on a free port with a fresh
// data directory and asks it twice. Run with `npm test`; it runs the
// `dohost` on PATH, or the one DOHOST names.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const project = join(dirname(fileURLToPath(import.meta.url)), "..");
const dohost = process.env.DOHOST || "dohost";

/** Starts the server; resolves with it and its URL once it serves. */
function serve(data) {
  const server = spawn(
    dohost,
    ["serve", "--listen", "127.0.0.1:0", "--config", join(project, "dohost.toml"), "--data", data],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    let log = "";
    server.on("error", (e) =>
      reject(new Error(`cannot run ${dohost} (${e.message}): put dohost on PATH or set DOHOST`)),
    );
    server.on("exit", (code) => reject(new Error(`dohost serve exited (${code}):\n${log}`)));
    server.stderr.setEncoding("utf8");
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const serving = log.match(/ on (http:\/\/\S+)/);
      if (serving) resolve({ server, url: serving[1] });
    });
  });
}

test("the counter counts", { timeout: 600_000 }, async () => {
  const data = mkdtempSync(join(tmpdir(), "{{name}}-test-"));
  const { server, url } = await serve(data);
  try {
    for (const expected of ["1", "2", "3"]) {
      const response = await fetch(url);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), expected);
    }
  } finally {
    const exited = once(server, "exit");
    server.kill();
    await exited;
    rmSync(data, { recursive: true, force: true });
  }
});
