"""The scaffold stage, `wasmfilter new`: a standalone filter project made from a reference crate in filters/ that
builds and passes its own scenarios as created. It owns which templates are offered and which of their files a
project gets (templates.py), which names a filter may have (names.py), the rendered Cargo.toml's inputs with the
workspace resolved and shared crates vendored (cargo_toml.py), the jinja2 sandbox (render.py), the in-memory plan of
every file with the documented renames (plan.py), writing it all-or-nothing (write.py), and the command's entry
point, `project.new` (project.py)."""
