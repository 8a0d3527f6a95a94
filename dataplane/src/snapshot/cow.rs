//! `CowVec`: the snapshot's array storage, shared between snapshot generations.
//!
//! The incremental compiler keeps one builder and publishes a snapshot after every
//! change. Copying every table per generation would cost O(snapshot) (tens of MB at
//! 50k pods); instead an array is a table of chunks, each an `Arc<[T]>` of about
//! `CHUNK_BYTES`. A snapshot clone copies only the chunk table (pointer copies), and a
//! write copies only the chunk it lands in when an older snapshot still holds it, so
//! a new generation costs O(what changed).
//!
//! Reads take one extra, cache-resident step: the chunk table (a few KB even for the
//! largest table) and then the element. Slices (`v[a..b]`) must lie inside one chunk:
//! [`CowVec::push_run`] guarantees that for the runs it appends (a run that does not
//! fit in the current chunk starts a new one; one longer than a chunk gets a chunk of
//! its own size, whose index range spans several table entries that all point at it).
//!
//! A published snapshot that will stay in force for a while is better read without
//! the chunk table (at 50k pods it no longer fits in cache, and it puts a dependent
//! load before every element): [`CowVec::flattened`] is a copy whose elements are one
//! array, which reads try first, at the cost of a plain slice. A flattened vector is
//! still a valid chunked one (the array is one chunk spanning every table entry, as a
//! long run's is): a write drops the flat view and goes the chunked way.

use std::ops::{Index, Range};
use std::sync::Arc;

/// Target size of one chunk in bytes (elements per chunk: the power of two nearest below).
const CHUNK_BYTES: usize = 16 * 1024;

/// Elements per chunk for `T`, as a shift: at least 16 elements, a power of two.
pub(crate) const fn chunk_shift<T>() -> u32 {
    let size = if std::mem::size_of::<T>() == 0 { 1 } else { std::mem::size_of::<T>() };
    let elems = CHUNK_BYTES / size;
    let shift = usize::BITS - 1 - elems.leading_zeros();
    if shift < 4 {
        4
    } else {
        shift
    }
}

/// One entry of the chunk table: element `i` of the chunk's index range lives at
/// `chunk[base + (i & mask)]` (`base` is non-zero only for the later table entries of
/// a run longer than a chunk).
#[derive(Clone, Debug)]
struct Slot<T> {
    chunk: Arc<[T]>,
    base: u32,
}

/// A growable array of `Copy` values in shared, copy-on-write chunks. See the module doc.
#[derive(Clone, Debug)]
pub(crate) struct CowVec<T: Copy> {
    /// When flattened: every element, `flat[i]` being element `i` (padded with `filler`
    /// to whole chunks: the one chunk `slots` spans), else empty. Reads try it first.
    flat: Arc<[T]>,
    slots: Vec<Slot<T>>,
    /// log2 of the elements per chunk.
    shift: u32,
    /// Index space in use (includes padding left by `push_run`).
    len: usize,
    /// Value of unused positions (never read through a valid index).
    filler: T,
}

impl<T: Copy> CowVec<T> {
    /// Empty, with chunks of about `CHUNK_BYTES`; `filler` fills unused positions.
    pub(crate) fn new(filler: T) -> Self {
        Self::with_chunk_shift(filler, chunk_shift::<T>())
    }

    /// Empty, with `1 << shift` elements per chunk (two arrays indexed alike, such as
    /// segment starts and their lists, use one shift so that runs pad alike).
    pub(crate) fn with_chunk_shift(filler: T, shift: u32) -> Self {
        CowVec { flat: Arc::from(Vec::new()), slots: Vec::new(), shift, len: 0, filler }
    }

    /// A copy holding every element in one array (see the module doc), same indices.
    pub(crate) fn flattened(&self) -> Self {
        if self.is_flat() || self.len == 0 {
            return self.clone();
        }
        self.flat_copy(|_, v| v)
    }

    /// A flattened copy (of a flat vector too) holding `f(i, v)` in place of every
    /// element `v` at index `i`, padding included (`f` must map the filler to itself).
    pub(crate) fn flattened_map(&self, f: impl Fn(usize, T) -> T) -> Self {
        if self.len == 0 {
            return self.clone();
        }
        self.flat_copy(f)
    }

    fn flat_copy(&self, f: impl Fn(usize, T) -> T) -> Self {
        let entries = self.len.div_ceil(self.chunk());
        let mut all = Vec::with_capacity(entries * self.chunk());
        for s in &self.slots {
            let start = s.base as usize;
            let end = (start + self.chunk()).min(s.chunk.len());
            let at = all.len();
            all.extend(s.chunk[start..end].iter().enumerate().map(|(i, &v)| f(at + i, v)));
            // A chunk smaller than `chunk` (the last, growing one) leaves filler behind.
            all.resize(all.len().next_multiple_of(self.chunk()), self.filler);
        }
        debug_assert_eq!(all.len(), entries * self.chunk());
        let flat: Arc<[T]> = all.into();
        let slots = (0..entries).map(|k| Slot { chunk: flat.clone(), base: (k * self.chunk()) as u32 }).collect();
        CowVec { flat, slots, shift: self.shift, len: self.len, filler: self.filler }
    }

    /// Whether reads go through one flat array (see [`CowVec::flattened`]).
    pub(crate) fn is_flat(&self) -> bool {
        !self.flat.is_empty()
    }

    /// Before a write: reads go back to the chunk table, which the write keeps current.
    fn unflatten(&mut self) {
        if self.is_flat() {
            self.flat = Arc::from(Vec::new());
        }
    }

    #[inline(always)]
    fn chunk(&self) -> usize {
        1 << self.shift
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.chunk() - 1
    }

    /// Index space in use: one past the last pushed element (padding included).
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        if i < self.flat.len() {
            return Some(&self.flat[i]);
        }
        let s = &self.slots[i >> self.shift];
        s.chunk.get(s.base as usize + (i & self.mask()))
    }

    /// Append one value; its index.
    pub(crate) fn push(&mut self, value: T) -> usize {
        self.push_run(&[value])
    }

    /// Append `run` so that `self[start..start + run.len()]` is one slice; `start`.
    pub(crate) fn push_run(&mut self, run: &[T]) -> usize {
        if run.is_empty() {
            return self.len;
        }
        self.unflatten();
        let off = self.len & self.mask();
        let spanned = off != 0 && self.spans(self.slots.len() - 1);
        if off != 0 && (off + run.len() > self.chunk() || spanned) {
            // Does not fit in the current chunk, or that chunk spans several entries (a
            // flattened vector's): leave its tail unused.
            self.len += self.chunk() - off;
        }
        let start = self.len;
        if run.len() > self.chunk() {
            // A chunk of its own, spanning as many table entries as it needs.
            let entries = run.len().div_ceil(self.chunk());
            let chunk: Arc<[T]> = Arc::from(run);
            for k in 0..entries {
                self.slots.push(Slot { chunk: chunk.clone(), base: (k * self.chunk()) as u32 });
            }
            self.len += entries * self.chunk();
            return start;
        }
        let off = start & self.mask();
        let end = off + run.len();
        if off == 0 {
            // A new chunk, sized to what it holds now (it grows by doubling up to CHUNK).
            let cap = end.next_power_of_two().max(16).min(self.chunk());
            let mut v = Vec::with_capacity(cap);
            v.extend_from_slice(run);
            v.resize(cap, self.filler);
            self.slots.push(Slot { chunk: v.into(), base: 0 });
        } else {
            let (filler, chunk) = (self.filler, self.chunk());
            let slot = self.slots.last_mut().expect("a partly filled chunk exists");
            if slot.chunk.len() < end {
                let cap = end.next_power_of_two().min(chunk);
                let mut v = Vec::with_capacity(cap);
                v.extend_from_slice(&slot.chunk[..off]);
                v.extend_from_slice(run);
                v.resize(cap, filler);
                slot.chunk = v.into();
            } else {
                make_mut(&mut slot.chunk)[off..end].copy_from_slice(run);
            }
        }
        self.len = start + run.len();
        start
    }

    /// Overwrite element `i` (copying its chunk first if an older snapshot shares it).
    pub(crate) fn set(&mut self, i: usize, value: T) {
        self.unflatten();
        let t = self.entry_of(i);
        let base = self.slots[t].base as usize;
        if self.spans(t) {
            // A chunk spanning several table entries: a modified copy for all of them.
            let first = t - base / self.chunk();
            let mut owned: Vec<T> = self.slots[first].chunk.to_vec();
            owned[base + (i & self.mask())] = value;
            let owned: Arc<[T]> = owned.into();
            let mut k = first;
            while k < self.slots.len() && (k == first || self.slots[k].base != 0) {
                self.slots[k].chunk = owned.clone();
                k += 1;
            }
            return;
        }
        let at = i & self.mask();
        make_mut(&mut self.slots[t].chunk)[at] = value;
    }

    /// The table entry of element `i`.
    fn entry_of(&self, i: usize) -> usize {
        assert!(i < self.len, "CowVec index {i} out of range (len {})", self.len);
        i >> self.shift
    }

    /// Whether table entry `t`'s chunk spans several entries (a long run).
    fn spans(&self, t: usize) -> bool {
        self.slots[t].base != 0 || (t + 1 < self.slots.len() && self.slots[t + 1].base != 0)
    }

    /// Bytes of the chunks (shared chunks counted in full).
    pub(crate) fn heap_bytes(&self) -> usize {
        let mut bytes = self.slots.capacity() * std::mem::size_of::<Slot<T>>();
        for s in &self.slots {
            if s.base == 0 {
                bytes += s.chunk.len() * std::mem::size_of::<T>();
            }
        }
        bytes
    }
}

/// The chunk, made unique (copied when an older snapshot still holds it).
fn make_mut<T: Copy>(chunk: &mut Arc<[T]>) -> &mut [T] {
    if Arc::get_mut(chunk).is_none() {
        *chunk = Arc::from(&chunk[..]);
    }
    Arc::get_mut(chunk).expect("just made unique")
}

impl<T: Copy> Index<usize> for CowVec<T> {
    type Output = T;
    #[inline(always)]
    fn index(&self, i: usize) -> &T {
        debug_assert!(i < self.len, "CowVec index {i} out of range (len {})", self.len);
        if i < self.flat.len() {
            return &self.flat[i];
        }
        let s = &self.slots[i >> self.shift];
        &s.chunk[s.base as usize + (i & self.mask())]
    }
}

impl<T: Copy> Index<Range<usize>> for CowVec<T> {
    type Output = [T];
    /// A slice inside one chunk (a run appended by `push_run`, or part of one).
    #[inline(always)]
    fn index(&self, r: Range<usize>) -> &[T] {
        if r.start >= r.end {
            return &[];
        }
        debug_assert!(r.end <= self.len, "CowVec range {r:?} out of range (len {})", self.len);
        if r.end <= self.flat.len() {
            return &self.flat[r];
        }
        let s = &self.slots[r.start >> self.shift];
        let off = s.base as usize + (r.start & self.mask());
        &s.chunk[off..off + (r.end - r.start)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Behaves like a `Vec` under pushes, runs (each one slice, some longer than a
        /// chunk of 16), writes and flattening (writes and pushes go on after it), and a
        /// clone taken in between keeps what it saw.
        #[test]
        fn matches_a_vec(ops in proptest::collection::vec((0u8..5, 0usize..5000, any::<u32>()), 0..300)) {
            let mut cow: CowVec<u32> = CowVec::with_chunk_shift(u32::MAX, 4);
            let mut model: Vec<Option<u32>> = Vec::new();
            let mut runs: Vec<(usize, Vec<u32>)> = Vec::new();
            let mut frozen: Vec<(CowVec<u32>, Vec<Option<u32>>)> = Vec::new();
            for (op, n, v) in ops {
                match op {
                    0 => {
                        let i = cow.push(v);
                        model.resize(i, None);
                        model.push(Some(v));
                    }
                    1 => {
                        let run: Vec<u32> = (0..n % 70).map(|k| v.wrapping_add(k as u32)).collect();
                        let i = cow.push_run(&run);
                        if !run.is_empty() {
                            model.resize(i, None);
                            model.extend(run.iter().map(|&x| Some(x)));
                            runs.push((i, run));
                        }
                    }
                    2 if !model.is_empty() => {
                        let i = n % model.len();
                        if model[i].is_some() {
                            cow.set(i, v);
                            model[i] = Some(v);
                            for (start, run) in runs.iter_mut() {
                                if (*start..*start + run.len()).contains(&i) {
                                    run[i - *start] = v;
                                }
                            }
                        }
                    }
                    3 => {
                        cow = cow.flattened();
                        prop_assert_eq!(cow.is_flat(), cow.len() > 0);
                    }
                    _ => frozen.push((cow.clone(), model.clone())),
                }
                prop_assert!(cow.len() >= model.len());
            }
            for (i, m) in model.iter().enumerate() {
                if let Some(m) = m {
                    prop_assert_eq!(cow[i], *m);
                    prop_assert_eq!(cow.get(i), Some(m));
                }
            }
            for (start, run) in &runs {
                prop_assert_eq!(&cow[*start..*start + run.len()], run.as_slice());
            }
            for (old, m) in &frozen {
                let flat = old.flattened();
                prop_assert_eq!(flat.len(), old.len());
                for (i, m) in m.iter().enumerate() {
                    if let Some(m) = m {
                        prop_assert_eq!(old[i], *m);
                        prop_assert_eq!(flat[i], *m);
                        prop_assert_eq!(flat.get(i), Some(m));
                    }
                }
            }
        }
    }

    #[test]
    fn a_clone_shares_chunks_and_a_write_copies_one() {
        let mut v: CowVec<u64> = CowVec::new(0);
        for i in 0..100_000u64 {
            v.push(i);
        }
        let old = v.clone();
        v.set(5, 7);
        let shared = v.slots.iter().zip(&old.slots).filter(|(a, b)| Arc::ptr_eq(&a.chunk, &b.chunk)).count();
        assert_eq!(shared, v.slots.len() - 1);
        assert_eq!((old[5], v[5]), (5, 7));
    }
}
