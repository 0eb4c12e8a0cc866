"""The harness stage: the filter running for a test. It starts stacks — echo upstream(s) plus an Envoy with the
filter — on a backend chosen by value (process or docker, with the Docker session that labels and cleans up
containers), and runs scenario files against them: the model, the exact HTTP client, the per-case checks, the
runner with JUnit reports, and the pytest plugin that makes every scenario file a test. docker-compose of the
reference filters lives here too."""
