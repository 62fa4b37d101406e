//! Link options for the `switchboard` executable, to keep its resident memory small.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=bench/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    // Relative relocations packed as DT_RELR (glibc ≥ 2.36; linkers that predate it ignore the
    // option with a warning): 1.6 MB of relocations, all read at every start, take 21 KB.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");

    // The functions Switchboard runs at start and while it works, laid out together (the list
    // is written by scripts/symbol-order). The kernel maps an executable's code in 64 KB
    // blocks, so these functions spread over the whole text kept 11 MB of it resident; packed,
    // under 5 (`bench/README.md`). Only for release builds linked by rust-lld, Rust's default
    // linker on x86_64 Linux (GNU ld has no such option): not when another linker is set.
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("bench/symbol-order.txt");
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = env::var_os("RUSTC_LINKER").is_some()
        || rustflags.contains("fuse-ld")
        || rustflags.contains("linker");
    if var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && !other_linker
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions a later change removed or renamed are skipped silently.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
