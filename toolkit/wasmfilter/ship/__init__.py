"""The ship stage: a built filter as a Wasm OCI image and into a mesh. It owns the image format (image), OCI image
layouts on disk (layout), packaging a filter (package), image references (reference), registry credentials
(credentials), the distribution-API client (client), push and pull (transfer), a local registry for tests
(registry), and the Istio WasmPlugin / Envoy Gateway EnvoyExtensionPolicy manifests (istio). Nothing here runs
Envoy; docs/oci.md describes it all."""
