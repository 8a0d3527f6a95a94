//! Generates raw bindings to the system DPDK and compiles the inline-function shim.
//! DPDK is found by pkg-config (`libdpdk` >= 22.11); bindgen gets its cflags as given
//! (they carry `-include rte_config.h`) minus `-march`, which libclang need not see.

use std::env;
use std::path::PathBuf;

const MIN_DPDK: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=build.rs");

    let dpdk = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            panic!(
                "\n\npalisade needs DPDK >= {MIN_DPDK} with its development files, found through \
                 pkg-config as `libdpdk`.\n  On Debian/Ubuntu: apt-get install dpdk dpdk-dev libdpdk-dev pkg-config\n  \
                 pkg-config said: {e}\n\n"
            );
        }
    };

    let cflags = pkg_config_cflags();
    let bindgen_flags: Vec<String> = cflags.iter().filter(|f| !f.starts_with("-march")).cloned().collect();

    // The shim: DPDK's static-inline fast path, exported as real symbols.
    let mut build = cc::Build::new();
    build.file("shim/shim.c").opt_level(3).warnings(true);
    for f in &cflags {
        build.flag(f);
    }
    for p in &dpdk.include_paths {
        build.include(p);
    }
    build.compile("palisade_dpdk_shim");
    // rte_eth_from_rings (tests inject packets through ring-backed ports) lives in the
    // net_ring PMD, which libdpdk.pc does not list; EAL's plugin loader finds the same
    // shared object again by soname, so the driver registers once.
    println!("cargo:rustc-link-lib=rte_net_ring");

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&bindgen_flags)
        .clang_args(dpdk.include_paths.iter().map(|p| format!("-I{}", p.display())))
        .allowlist_function("rte_eal_.*|rte_eth_.*|rte_pktmbuf_.*|rte_mempool_.*|rte_lcore_.*|rte_get_.*|rte_ring_.*|rte_acl_.*|rte_socket_id|rte_strerror|rte_exit|rte_dev_.*|rte_vdev_.*|rte_delay_.*|rte_log_.*|rte_openlog_stream")
        .allowlist_function("palisade_.*")
        .allowlist_type("rte_mbuf|rte_mempool|rte_eth_.*|rte_ether_addr|rte_acl_.*|rte_ring|rte_lcore_state_t|rte_rmt_call_main_t")
        .allowlist_var("RTE_.*")
        .allowlist_var("ETH_.*")
        .blocklist_type("max_align_t")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "\n\nbindgen could not generate DPDK bindings: {e}\n  bindgen needs libclang: \
                 apt-get install libclang-dev\n\n"
            )
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}

fn pkg_config_cflags() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("run pkg-config --cflags libdpdk (apt-get install pkg-config)");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}
