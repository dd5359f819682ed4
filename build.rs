//! Build script: the XDP object is prebuilt and committed (`cargo xtask build-bpf`), and
//! `src/sys/xdp/loader.rs` embeds it with `include_bytes!`, so nothing is compiled here. This only
//! tells cargo to rebuild when the BPF sources change, so an edited source without a rebuilt
//! object is noticed by `cargo xtask build-bpf --check` rather than silently ignored.

fn main() {
    println!("cargo:rerun-if-changed=bpf/aoe_xdp.bpf.o");
    println!("cargo:rerun-if-changed=bpf/aoe_xdp.bpf.c");
    println!("cargo:rerun-if-changed=bpf/aoe_shared.h");
    println!("cargo:rerun-if-changed=build.rs");
}
