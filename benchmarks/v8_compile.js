// What V8 spends compiling a module with TurboFan, eagerly and on one thread (how Envoy's V8 compiles: no Liftoff,
// no lazy compilation), per function: an investigation aid on Node's V8, not a toolkit dependency.
// usage: node --no-liftoff --no-wasm-lazy-compilation --single-threaded --trace-wasm-compilation-times \
//          benchmarks/v8_compile.js MODULE.wasm 2>&1 | sort ...   (docs/benchmarks.md, "Issue 16": VM start)
const fs = require('fs');
const file = process.argv[2];
const bytes = fs.readFileSync(file);
const started = process.hrtime.bigint();
new WebAssembly.Module(bytes);
const ms = Number(process.hrtime.bigint() - started) / 1e6;
console.log(`${file}: ${bytes.length} bytes, compiled in ${ms.toFixed(1)} ms`);
