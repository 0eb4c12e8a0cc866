"""The request fuzzer behind `wasmfilter fuzz`: generate.py (seeded requests), rawclient.py (raw HTTP/1.1),
invariants.py (what must hold), shrink.py (smallest failing request → scenario case), run.py (the loop)."""
