//! `Acl`: a safe owner of a DPDK `rte_acl` context over IPv4 5-tuples, built for the
//! classifier comparison (`benches/acl.rs`, `tests/acl_equivalence.rs`): the same rule
//! list compiled for `rte_acl` and for palisade's snapshot, looked up over one trace.
//!
//! Field layout is DPDK's classic IPv4 5-tuple (as in `l3fwd-acl`): protocol (bitmask,
//! input word 0), source and destination address (prefix, words 1 and 2), source and
//! destination port (range, sharing word 3). Rule values are in host order; the lookup
//! keys ([`AclKey`]) hold the packet's bytes in network order, as DPDK requires.
//! `rte_acl` returns the `userdata` of the highest-priority matching rule, 0 for none.

use super::{last_error, Eal};
use crate::snapshot::five_tuple::FiveTupleSet;
use dpdk_sys::{
    rte_acl_config, rte_acl_ctx, rte_acl_field, rte_acl_field_def, rte_acl_field_types, rte_acl_param, rte_acl_rule,
    rte_acl_rule_data, RTE_ACL_FIELD_TYPE_BITMASK, RTE_ACL_FIELD_TYPE_MASK, RTE_ACL_FIELD_TYPE_RANGE, RTE_ACL_MAX_PRIORITY,
};
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

const FIELDS: usize = 5;

/// Highest priority a rule may have (`RTE_ACL_MAX_PRIORITY`).
pub const MAX_PRIORITY: i32 = RTE_ACL_MAX_PRIORITY as i32;

/// `RTE_ACL_RULE_DEF(name, 5)`: the rule header followed by five fields.
#[repr(C)]
#[derive(Clone, Copy)]
struct Rule5 {
    data: rte_acl_rule_data,
    field: [rte_acl_field; FIELDS],
}

/// One 5-tuple rule. Prefixes are `(address, length)`; `proto: None` matches every
/// protocol. A packet matching several rules gets the `userdata` (≥ 1) of the one with
/// the highest `priority` (1..=[`MAX_PRIORITY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclRule {
    pub proto: Option<u8>,
    pub src: (u32, u8),
    pub dst: (u32, u8),
    pub src_ports: (u16, u16),
    pub dst_ports: (u16, u16),
    pub priority: i32,
    pub userdata: u32,
}

impl AclRule {
    /// The rules of a 5-tuple rule list (`snapshot::five_tuple`): rule `i` to its
    /// group's /24 gets priority `MAX_PRIORITY - i` (the first match wins, as in the
    /// snapshot) and userdata `i + 1`.
    pub fn from_five_tuples(set: &FiveTupleSet) -> Vec<AclRule> {
        set.rules
            .iter()
            .enumerate()
            .map(|(i, r)| AclRule {
                proto: Some(r.proto),
                src: r.src,
                dst: (set.group_net(r.group), 24),
                src_ports: (0, u16::MAX),
                dst_ports: r.dst_ports,
                priority: MAX_PRIORITY - i as i32,
                userdata: i as u32 + 1,
            })
            .collect()
    }
}

/// A lookup key: the 5-tuple in network byte order, laid out as the field definitions say.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AclKey {
    proto: u8,
    _pad: [u8; 3],
    src: [u8; 4],
    dst: [u8; 4],
    src_port: [u8; 2],
    dst_port: [u8; 2],
}

impl AclKey {
    pub fn new(proto: u8, src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, src_port: u16, dst_port: u16) -> AclKey {
        AclKey {
            proto,
            _pad: [0; 3],
            src: src.octets(),
            dst: dst.octets(),
            src_port: src_port.to_be_bytes(),
            dst_port: dst_port.to_be_bytes(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    #[error("ACL context name {0:?} contains a NUL byte")]
    BadName(String),
    #[error("rte_acl_create({name:?}) failed: {reason}")]
    Create { name: String, reason: String },
    #[error("rte_acl_add_rules on {name:?} failed: {reason}")]
    AddRules { name: String, reason: String },
    #[error("rte_acl_build on {name:?} failed with {code}: {reason}")]
    Build { name: String, code: i32, reason: String },
    #[error("rule {index}: {what} (priorities are 1..={MAX_PRIORITY}, userdata ≥ 1, prefix lengths ≤ 32, port ranges lo ≤ hi)")]
    BadRule { index: usize, what: &'static str },
}

/// A built `rte_acl` context with one category.
#[derive(Debug)]
pub struct Acl {
    ctx: NonNull<rte_acl_ctx>,
    _eal: Arc<Eal>,
}

// SAFETY: a built context is read-only; rte_acl_classify is safe to call from several
// threads on one context, and it is freed only on drop.
unsafe impl Send for Acl {}
// SAFETY: as above.
unsafe impl Sync for Acl {}

fn field_value(v: u64, size: u8) -> rte_acl_field_types {
    match size {
        1 => rte_acl_field_types { u8_: v as u8 },
        2 => rte_acl_field_types { u16_: v as u16 },
        _ => rte_acl_field_types { u32_: v as u32 },
    }
}

fn defs() -> [rte_acl_field_def; FIELDS] {
    let def = |type_: u32, size: u8, field_index: u8, input_index: u8, offset: usize| rte_acl_field_def {
        type_: type_ as u8,
        size,
        field_index,
        input_index,
        offset: offset as u32,
    };
    [
        def(RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, std::mem::offset_of!(AclKey, proto)),
        def(RTE_ACL_FIELD_TYPE_MASK, 4, 1, 1, std::mem::offset_of!(AclKey, src)),
        def(RTE_ACL_FIELD_TYPE_MASK, 4, 2, 2, std::mem::offset_of!(AclKey, dst)),
        def(RTE_ACL_FIELD_TYPE_RANGE, 2, 3, 3, std::mem::offset_of!(AclKey, src_port)),
        def(RTE_ACL_FIELD_TYPE_RANGE, 2, 4, 3, std::mem::offset_of!(AclKey, dst_port)),
    ]
}

fn encode(index: usize, r: &AclRule) -> Result<Rule5, AclError> {
    let bad = |what| AclError::BadRule { index, what };
    if !(1..=MAX_PRIORITY).contains(&r.priority) {
        return Err(bad("priority out of range"));
    }
    if r.userdata == 0 {
        return Err(bad("userdata 0 means no match"));
    }
    if r.src.1 > 32 || r.dst.1 > 32 {
        return Err(bad("prefix longer than 32"));
    }
    if r.src_ports.0 > r.src_ports.1 || r.dst_ports.0 > r.dst_ports.1 {
        return Err(bad("port range with lo > hi"));
    }
    let f = |value: u64, mask_range: u64, size: u8| rte_acl_field {
        value: field_value(value, size),
        mask_range: field_value(mask_range, size),
    };
    let (proto, proto_mask) = match r.proto {
        Some(p) => (u64::from(p), 0xff),
        None => (0, 0),
    };
    Ok(Rule5 {
        data: rte_acl_rule_data { category_mask: 1, priority: r.priority, userdata: r.userdata },
        field: [
            f(proto, proto_mask, 1),
            f(u64::from(r.src.0), u64::from(r.src.1), 4),
            f(u64::from(r.dst.0), u64::from(r.dst.1), 4),
            f(u64::from(r.src_ports.0), u64::from(r.src_ports.1), 2),
            f(u64::from(r.dst_ports.0), u64::from(r.dst_ports.1), 2),
        ],
    })
}

impl Acl {
    /// Create context `name` (unique among live contexts), add `rules` and build it.
    pub fn build(eal: &Arc<Eal>, name: &str, rules: &[AclRule]) -> Result<Acl, AclError> {
        let encoded = rules.iter().enumerate().map(|(i, r)| encode(i, r)).collect::<Result<Vec<Rule5>, _>>()?;
        let cname = CString::new(name).map_err(|_| AclError::BadName(name.to_owned()))?;
        let param = rte_acl_param {
            name: cname.as_ptr(),
            socket_id: -1,
            rule_size: std::mem::size_of::<Rule5>() as u32,
            max_rule_num: encoded.len().max(1) as u32,
        };
        // SAFETY: EAL is initialised (we hold it); `param` and the name it points to
        // outlive the call, which copies what it keeps.
        let ctx = unsafe { dpdk_sys::rte_acl_create(&param) };
        let ctx = NonNull::new(ctx).ok_or_else(|| AclError::Create { name: name.to_owned(), reason: last_error() })?;
        // From here on, drop frees the context on every error path.
        let acl = Acl { ctx, _eal: eal.clone() };
        if !encoded.is_empty() {
            // SAFETY: `encoded` holds `len` rules of exactly `rule_size` bytes each, laid
            // out as RTE_ACL_RULE_DEF(_, 5); DPDK copies them.
            let rc = unsafe {
                dpdk_sys::rte_acl_add_rules(acl.ctx.as_ptr(), encoded.as_ptr() as *const rte_acl_rule, encoded.len() as u32)
            };
            if rc != 0 {
                return Err(AclError::AddRules { name: name.to_owned(), reason: last_error() });
            }
        }
        let mut cfg = rte_acl_config { num_categories: 1, num_fields: FIELDS as u32, max_size: 0, ..Default::default() };
        cfg.defs[..FIELDS].copy_from_slice(&defs());
        // SAFETY: the context is valid and owned; `cfg` describes the rules' layout.
        let rc = unsafe { dpdk_sys::rte_acl_build(acl.ctx.as_ptr(), &cfg) };
        if rc != 0 {
            return Err(AclError::Build { name: name.to_owned(), code: rc, reason: last_error() });
        }
        Ok(acl)
    }

    /// Classify `keys` (at most 64 at a time is what DPDK's vector paths like best):
    /// `results[i]` becomes the userdata of the best rule matching `keys[i]`, or 0.
    ///
    /// # Panics
    /// If `results` is shorter than `keys` or `keys` is longer than 256.
    pub fn classify(&self, keys: &[AclKey], results: &mut [u32]) {
        const MAX: usize = 256;
        assert!(keys.len() <= MAX && results.len() >= keys.len(), "at most {MAX} keys, and a result slot per key");
        let mut ptrs: [*const u8; MAX] = [std::ptr::null(); MAX];
        for (p, k) in ptrs.iter_mut().zip(keys) {
            *p = (k as *const AclKey).cast();
        }
        // SAFETY: the built context is valid; `ptrs[..n]` point at live keys laid out as
        // the field definitions say (each at least 16 readable bytes); `results` has
        // room for n results of one category.
        let rc = unsafe {
            dpdk_sys::rte_acl_classify(self.ctx.as_ptr(), ptrs.as_mut_ptr(), results.as_mut_ptr(), keys.len() as u32, 1)
        };
        debug_assert_eq!(rc, 0, "rte_acl_classify rejected valid arguments");
    }
}

impl Drop for Acl {
    fn drop(&mut self) {
        // SAFETY: the context came from rte_acl_create and is freed once, here.
        unsafe { dpdk_sys::rte_acl_free(self.ctx.as_ptr()) };
    }
}
