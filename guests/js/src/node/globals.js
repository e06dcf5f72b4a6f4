// The globals Workers' nodejs_compat adds, which the build injects where
// code names them without importing them: `process` and `Buffer`.

export { default as process } from "./process.js";
export { Buffer } from "buffer";
