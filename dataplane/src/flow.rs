//! The per-worker flow table: connection state owned outright by one worker, so the
//! packet path takes no lock and shares no cache line.
//!
//! - `key`: the bidirectional key. Both directions of a connection canonicalise to one
//!   `FlowKey` (addresses and ports ordered, plus protocol and VLANs); the `Side` a
//!   packet came from says whether it travels like the initiator or like the responder.
//! - `entry`: the 64-byte `FlowEntry` (verdict, deciding rules, generation, timestamps,
//!   TCP state, per-direction counters, initiator side) and the state-dependent timeouts.
//! - `table`: `FlowTable`, open addressing with linear probing over a dense slot array
//!   that points into a preallocated entry pool. Nothing allocates after construction;
//!   aging is incremental; a full table refuses inserts rather than evicting anything.

pub mod entry;
pub mod key;
pub mod table;

pub use entry::{FlowEntry, FlowTimeouts, TcpState, TimeoutClass};
pub use key::{FlowKey, Side};
pub use table::{FlowTable, TableFull};
