"""Which names a new filter may have. The name becomes the crate name, the manifest name, the root_id and the
metric prefix, so it must suit all of them: what cargo accepts as a package name, no Rust keyword, no name of a
sysroot crate -Zbuild-std compiles or of cargo's target layout, none of the filter's own dependencies."""

from __future__ import annotations

import os
import re

from wasmfilter.errors import UsageError

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# Strict and reserved keywords (2024 edition): cargo refuses them as package names.
RUST_KEYWORDS = frozenset("""
    as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut
    pub ref return self static struct super trait true type unsafe use where while
    abstract become box do final gen macro override priv try typeof unsized virtual yield
""".split())
# Names cargo refuses or that clash with the sysroot crates -Zbuild-std compiles, or with cargo's target layout.
RESERVED_NAMES = frozenset("""
    std core alloc proc_macro test compiler_builtins panic_abort panic_unwind unwind
    build deps examples incremental
    con prn aux nul com1 com2 com3 com4 com5 com6 com7 com8 com9 lpt1 lpt2 lpt3 lpt4 lpt5 lpt6 lpt7 lpt8 lpt9
""".split())


def crate_ident(name: str) -> str:
    return name.replace("-", "_")


def validate_name(name: str, *, forbidden: set[str] | frozenset[str] = frozenset()) -> None:
    """NAME becomes the crate name, the manifest name, the root_id and the metric prefix."""
    fix = "use lower-case letters, digits, '-' or '_', starting with a letter (e.g. my-filter)"
    if not name:
        raise UsageError("the filter name is empty", fix=fix)
    if "/" in name or "\\" in name or name.startswith(".") or os.path.isabs(name):
        raise UsageError(f"the filter name '{name}' is a path, not a name",
                         fix="pass a plain name; choose the directory with --dir")
    if not NAME_RE.match(name):
        why = ("starts with a digit" if name[0].isdigit() else
               "has upper-case letters" if name.lower() != name else
               "is longer than 63 characters" if len(name) > 63 else
               "has characters other than a-z, 0-9, '-' and '_'")
        raise UsageError(f"the filter name '{name}' {why}", fix=fix)
    ident = crate_ident(name)
    if ident in RUST_KEYWORDS or name in RUST_KEYWORDS:
        raise UsageError(f"the filter name '{name}' is a Rust keyword", fix="choose another name")
    if ident in RESERVED_NAMES or name in RESERVED_NAMES:
        raise UsageError(f"the filter name '{name}' is reserved by Rust or cargo", fix="choose another name")
    if ident in {crate_ident(f) for f in forbidden}:
        raise UsageError(f"the filter name '{name}' is the name of one of its dependencies",
                         fix="choose another name")
