// `node:process` as Workers' nodejs_compat has it, and the free `process`
// that Node polyfills (util, assert) read: no environment, no arguments,
// `nextTick` on the microtask queue.

export const env = {};
export const argv = [];
export const platform = "linux";
export const version = "v22.0.0";
export const versions = { node: "22.0.0" };

export function nextTick(callback, ...args) {
  queueMicrotask(() => callback(...args));
}

export function cwd() {
  return "/";
}

export function emitWarning(warning) {
  console.warn(warning);
}

export const process = { env, argv, platform, version, versions, nextTick, cwd, emitWarning, stdout: {}, stderr: {} };
export default process;
