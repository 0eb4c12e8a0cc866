// Guest cost per request outside Envoy, on Node's V8 (an investigation aid, not a toolkit dependency: Node is
// not installed by the Makefile). One HTTP request's callbacks (context create, request headers, response headers,
// response body, log, done, delete) called from JS with stub host functions that answer at once, after 20,000
// warm-up requests. Prints ns per request and host calls per request. docs/benchmarks.md, "Issue 16".
// usage: node benchmarks/v8_guest.js MODULE.wasm ROOT_ID [CONFIG_JSON] [REQUESTS]
const fs = require('fs');
const [file, rootId, config, n] = [process.argv[2], process.argv[3], process.argv[4] || '{}', +(process.argv[5] || 200000)];
const bytes = fs.readFileSync(file);
const mod = new WebAssembly.Module(bytes);
let inst, calls = {};
const enc = new TextEncoder();
function mem() { return new DataView(inst.exports.memory.buffer); }
function alloc(buf) { const p = inst.exports.proxy_on_memory_allocate(buf.length); new Uint8Array(inst.exports.memory.buffer, p, buf.length).set(buf); return p; }
function put(buf, ptrPtr, sizePtr) { const p = alloc(buf); mem().setUint32(ptrPtr, p, true); mem().setUint32(sizePtr, buf.length, true); }
const headers = [[':method','GET'],[':path','/'],[':authority','localhost'],[':scheme','http'],['user-agent','wrk'],['x-request-id','abc']];
function serializeMap(pairs) {
  const parts = pairs.map(([k,v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8; for (const [k,v] of parts) size += k.length + 1 + v.length + 1;
  const b = new Uint8Array(size); const dv = new DataView(b.buffer); dv.setUint32(0, parts.length, true);
  let o = 4; for (const [k,v] of parts) { dv.setUint32(o, k.length, true); dv.setUint32(o+4, v.length, true); o += 8; }
  for (const [k,v] of parts) { b.set(k, o); o += k.length + 1; b.set(v, o); o += v.length + 1; }
  return b;
}
const mapBytes = serializeMap(headers);
const imports = {};
for (const imp of WebAssembly.Module.imports(mod)) {
  imports[imp.module] = imports[imp.module] || {};
  const name = imp.name;
  let f = () => 0;
  if (name === 'proxy_get_buffer_bytes') f = (t, start, len, pp, sp) => { put(enc.encode(config), pp, sp); return 0; };
  else if (name === 'proxy_get_header_map_pairs') f = (t, pp, sp) => { put(mapBytes, pp, sp); return 0; };
  else if (name === 'proxy_get_header_map_value') f = (t, kp, ks, pp, sp) => {
    const key = new TextDecoder().decode(new Uint8Array(inst.exports.memory.buffer, kp, ks));
    const h = headers.find(([k]) => k === key); if (!h) return 1; put(enc.encode(h[1]), pp, sp); return 0; };
  else if (name === 'proxy_get_property') f = () => 1;
  else if (name === 'proxy_get_current_time_nanoseconds') f = (p) => { mem().setBigUint64(p, BigInt(Date.now()) * 1000000n, true); return 0; };
  else if (name === 'proxy_define_metric') f = (t, np, ns, idp) => { mem().setUint32(idp, 1, true); return 0; };
  else if (name === 'proxy_get_shared_data') f = () => 1;
  else if (name === 'environ_sizes_get' || name === 'args_sizes_get') f = (a, b) => { mem().setUint32(a, 0, true); mem().setUint32(b, 0, true); return 0; };
  else if (name === 'clock_time_get') f = (id, prec, p) => { mem().setBigUint64(p, BigInt(Date.now()) * 1000000n, true); return 0; };
  else if (name === 'random_get') f = () => 0;
  else if (name === 'fd_write') f = (fd, iov, n, p) => { mem().setUint32(p, 0, true); return 0; };
  const counted = (...a) => { calls[name] = (calls[name] || 0) + 1; return f(...a); };
  imports[imp.module][name] = imp.kind === 'function' ? counted : undefined;
}
inst = new WebAssembly.Instance(mod, imports);
const e = inst.exports;
if (e._initialize) e._initialize(); if (e._start) e._start();
e.proxy_on_context_create(1, 0);
e.proxy_on_vm_start(1, 0);
if (!e.proxy_on_configure(1, config.length)) { console.log('configure failed'); process.exit(1); }
function request(id) {
  e.proxy_on_context_create(id, 1);
  e.proxy_on_request_headers(id, headers.length, 1);
  if (e.proxy_on_response_headers) e.proxy_on_response_headers(id, 3, 0);
  if (e.proxy_on_response_body) e.proxy_on_response_body(id, 5, 1);
  if (e.proxy_on_log) e.proxy_on_log(id);
  if (e.proxy_on_done) e.proxy_on_done(id);
  e.proxy_on_delete(id);
}
for (let i = 0; i < 20000; i++) request(2 + i);
calls = {};
const t = process.hrtime.bigint();
for (let i = 0; i < n; i++) request(100000 + i);
const ns = Number(process.hrtime.bigint() - t) / n;
const per = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, +(v / n).toFixed(2)]));
console.log(`${file.split('/').pop()}: ${ns.toFixed(0)} ns per request (guest + JS stubs); host calls per request ${JSON.stringify(per)}`);
