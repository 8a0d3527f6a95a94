//! What a worker's pipeline shares with the control plane while it runs, with no lock
//! and no allocation on the packet path:
//!
//! - `SharedCounters`: the pipeline's `Counters` and flow-table figures, copied into
//!   relaxed atomics (one cache-line-aligned block per worker) at its upkeep points
//!   (every aging step and every idle poll), never per packet.
//! - Dump requests: the control side sends a `DumpRequest` over a bounded channel; the
//!   worker answers between bursts (at the same upkeep points) with a `Dump` of its live
//!   flows and its policy drops by rule. Allocation happens there, off the packet path.
//! - Flow events: records of flows that aged out (and, if asked, of each denied first
//!   packet) leave through a bounded channel with `try_send`; a full channel drops the
//!   event and counts it (`Counters::flow_log_dropped`).
//!
//! Rule ids belong to the snapshot that produced them, so drops by rule travel with
//! their snapshot (`RuleDrops`) and the control side names them there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The link's channel types, for the control side's end of the flow-event channel.
pub use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{Counters, FlowRecord};
use crate::verdict::RuleId;

/// One worker's counters as the control plane reads them (relaxed, possibly a few
/// upkeep steps old; exact once the worker is idle).
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct SharedCounters {
    values: [AtomicU64; Counters::LEN],
    flow_entries: AtomicU64,
    flow_capacity: AtomicU64,
    generation: AtomicU64,
}

/// A copy of one worker's shared counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineSample {
    pub counters: Counters,
    pub flow_entries: u64,
    pub flow_capacity: u64,
    /// Generation of the snapshot the worker last ran with.
    pub generation: u64,
}

impl SharedCounters {
    /// Written by the owning worker only.
    pub(super) fn publish(&self, counters: &Counters, flow_entries: usize, flow_capacity: usize, generation: u64) {
        for (cell, value) in self.values.iter().zip(counters.values()) {
            cell.store(value, Ordering::Relaxed);
        }
        self.flow_entries.store(flow_entries as u64, Ordering::Relaxed);
        self.flow_capacity.store(flow_capacity as u64, Ordering::Relaxed);
        self.generation.store(generation, Ordering::Relaxed);
    }

    pub fn load(&self) -> PipelineSample {
        let mut values = [0u64; Counters::LEN];
        for (v, cell) in values.iter_mut().zip(&self.values) {
            *v = cell.load(Ordering::Relaxed);
        }
        PipelineSample {
            counters: Counters::from_values(values),
            flow_entries: self.flow_entries.load(Ordering::Relaxed),
            flow_capacity: self.flow_capacity.load(Ordering::Relaxed),
            generation: self.generation.load(Ordering::Relaxed),
        }
    }
}

/// Why a flow event was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEventKind {
    /// The connection is over: the flow aged out (idle, or closed and past its short
    /// timeout), or a new connection took over its tuple.
    End,
    /// A denied first packet (only with `log_denied`).
    Denied,
}

/// One flow-log record as it leaves the worker: plain data, TSC times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    pub kind: FlowEventKind,
    pub flow: FlowRecord,
    /// TSC when the event was sent.
    pub at: u64,
}

/// Policy drops by deciding rule, under one snapshot. `RuleId` `NO_RULE` counts drops
/// no rule is known for (fragments following a denied first fragment).
#[derive(Clone, Debug)]
pub struct RuleDrops<S> {
    pub snapshot: Arc<S>,
    pub counts: Vec<(RuleId, u64)>,
}

/// A worker's answer to a `DumpRequest`.
#[derive(Debug)]
pub struct Dump<S> {
    /// The worker's TSC when it answered (flow ages are measured against it).
    pub now: u64,
    /// The snapshot the worker runs with now.
    pub snapshot: Arc<S>,
    /// Live flows (empty unless the request asked for them).
    pub flows: Vec<FlowRecord>,
    /// Final drop counts of snapshots the worker has since replaced, each handed over
    /// exactly once: the receiver must add them to its totals.
    pub retired_rule_drops: Vec<RuleDrops<S>>,
    /// Drops under the current snapshot so far (cumulative: replaces the previous answer's).
    pub current_rule_drops: RuleDrops<S>,
}

/// Ask a worker for a dump; it answers on `reply` between bursts.
pub struct DumpRequest<S> {
    pub flows: bool,
    pub reply: Sender<Dump<S>>,
}

/// The worker's end of the control link (handed to `Pipeline::connect`).
pub struct ControlLink<S> {
    pub(super) shared: Arc<SharedCounters>,
    pub(super) requests: Receiver<DumpRequest<S>>,
    pub(super) flow_log: Option<Sender<FlowEvent>>,
    pub(super) log_denied: bool,
}

/// The control plane's end: read the counters any time, send dump requests.
pub struct PipelineHandle<S> {
    pub shared: Arc<SharedCounters>,
    pub requests: Sender<DumpRequest<S>>,
}

impl<S> Clone for PipelineHandle<S> {
    fn clone(&self) -> Self {
        PipelineHandle { shared: Arc::clone(&self.shared), requests: self.requests.clone() }
    }
}

/// A bounded channel for flow events: give the sender to each `control_link`, drain
/// the receiver into the flow log.
pub fn flow_event_channel(capacity: usize) -> (Sender<FlowEvent>, Receiver<FlowEvent>) {
    crossbeam_channel::bounded(capacity)
}

/// Requests a worker may have queued before it must answer some (the control side
/// sends one at a time per client, so a few is plenty).
const REQUEST_QUEUE: usize = 16;

/// A connected pair of ends. `flow_log`: where flow events go (a bounded channel the
/// caller drains); `log_denied`: also send one event per denied first packet.
pub fn control_link<S>(flow_log: Option<Sender<FlowEvent>>, log_denied: bool) -> (ControlLink<S>, PipelineHandle<S>) {
    let shared = Arc::new(SharedCounters::default());
    let (tx, rx) = crossbeam_channel::bounded(REQUEST_QUEUE);
    (
        ControlLink { shared: Arc::clone(&shared), requests: rx, flow_log, log_denied },
        PipelineHandle { shared, requests: tx },
    )
}

impl<S> PipelineHandle<S> {
    /// Asks the worker for a dump and waits up to `timeout` for it. `None` when the
    /// worker did not answer in time (it is stopped, or not polling). An answer that
    /// arrives just after the wait gave up is lost, with the retired rule drops it carried.
    pub fn dump(&self, flows: bool, timeout: std::time::Duration) -> Option<Dump<S>> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.requests.try_send(DumpRequest { flows, reply }).ok()?;
        answer.recv_timeout(timeout).ok()
    }
}
