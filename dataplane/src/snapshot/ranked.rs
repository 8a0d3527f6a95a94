//! `RankedTable`: a sparse (row, column) → `u32` table, read without a hash or a
//! probe chain: a presence bitmap over every (row, column) cell, and the values of
//! the present cells in cell order, found by rank (how many cells before it are
//! present).
//!
//! A flattened snapshot's identity table is one: rows are rule sets, columns the
//! classes of remote identities, and nearly every lookup of a large cluster is a
//! miss (the remote is not named by that rule set: 96 % of the lookups of the 10k
//! pods × 10k policies bench). In an open-addressing map a miss walks its probe chain
//! to a free slot, a loop whose length a random stream of keys makes the CPU
//! mispredict; here it is one bit. The bitmap also costs about 2 bits a cell where
//! the map's slots cost 8 bytes an entry at half load: 130 KiB against 1 MiB at 10k
//! pods.
//!
//! Each 64 columns of a row are one `Word`: their presence bits and the rank of the
//! first, so that a lookup reads one 16-byte word (never split over two cache lines)
//! and counts the bits of one `u64` (the rank needs no count over the words before).

use std::sync::Arc;

/// 64 columns of a row: which are present, and how many cells before them are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(16))]
struct Word {
    bits: u64,
    /// Present cells in all the words before this one (the rank of its first).
    base: u32,
}

impl Word {
    /// The rank of the cell at `bit`: present cells before this word and below `bit`.
    #[inline(always)]
    fn rank(&self, bit: u32) -> u32 {
        self.base + (self.bits & ((1u64 << bit) - 1)).count_ones()
    }
}

/// Words a row of `columns` columns takes, with room for one more column, which is
/// never present (see `RankedTable::word`).
fn words_per_row(columns: usize) -> usize {
    (columns + 1).div_ceil(64)
}

#[derive(Clone, Debug)]
pub(crate) struct RankedTable {
    /// Row `r`'s columns `64 k..64 k + 64` are `words[r * words_per_row + k]`.
    words: Arc<[Word]>,
    words_per_row: usize,
    /// Columns a row has (a greater one has no cell; its reads go to column `columns`).
    columns: u32,
    /// The values of the present cells, in (row, column) order.
    values: Arc<[u32]>,
}

impl RankedTable {
    /// Bytes of the bitmap of `rows` × `columns` cells (what to weigh against a map's
    /// slots before building one).
    pub(crate) fn bitmap_bytes(rows: usize, columns: usize) -> usize {
        rows.saturating_mul(words_per_row(columns)).saturating_mul(std::mem::size_of::<Word>())
    }

    /// A table of `rows` rows of `columns` columns holding `entries` (row, column,
    /// value), each (row, column) at most once and inside the table.
    pub(crate) fn new(rows: usize, columns: usize, entries: &[(u32, u32, u32)]) -> RankedTable {
        let words_per_row = words_per_row(columns);
        let mut words = vec![Word::default(); rows * words_per_row];
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|&(row, column, _)| (row, column));
        for &(row, column, _) in &sorted {
            assert!((row as usize) < rows && (column as usize) < columns, "cell ({row}, {column}) outside {rows} x {columns}");
            let w = &mut words[row as usize * words_per_row + column as usize / 64];
            assert!(w.bits >> (column % 64) & 1 == 0, "cell ({row}, {column}) given twice");
            w.bits |= 1 << (column % 64);
        }
        let mut rank = 0u32;
        for w in &mut words {
            w.base = rank;
            rank += w.bits.count_ones();
        }
        RankedTable {
            words: words.into(),
            words_per_row,
            columns: columns as u32,
            values: sorted.iter().map(|e| e.2).collect(),
        }
    }

    /// Index in `words` of the word holding (`row`, `column`), and the column's bit in
    /// it. A column past the table's reads column `columns`, whose bit is never set
    /// (every row has room for it): a clamp, not a branch, since which remotes have no
    /// column (identities without entries: a class of their own) is data the lookup
    /// cannot predict.
    #[inline(always)]
    fn cell(&self, row: u32, column: u32) -> (usize, u32) {
        let column = column.min(self.columns);
        (row as usize * self.words_per_row + (column / 64) as usize, column % 64)
    }

    /// The word holding (`row`, `column`), and the column's bit in it.
    #[inline(always)]
    fn word(&self, row: u32, column: u32) -> Option<(&Word, u32)> {
        let (i, bit) = self.cell(row, column);
        Some((self.words.get(i)?, bit))
    }

    /// The value of (`row`, `column`), if present.
    #[inline(always)]
    pub(crate) fn get(&self, row: u32, column: u32) -> Option<u32> {
        let (w, bit) = self.word(row, column)?;
        if w.bits >> bit & 1 == 0 {
            return None;
        }
        self.values.get(w.rank(bit) as usize).copied()
    }

    /// Start loading the word `get(row, column)` reads first. Clamped, not checked: a
    /// caller may request a cell outside the table (`classify_burst` does rather than
    /// branch on whether a side has one), and some line of the table is as good.
    #[inline(always)]
    pub(crate) fn prefetch(&self, row: u32, column: u32) {
        let (i, _) = self.cell(row, column);
        if let Some(w) = self.words.get(i.min(self.words.len().saturating_sub(1))) {
            crate::dpdk::prefetch::prefetch_read(w);
        }
    }

    /// Present cells.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<Word>() + self.values.len() * std::mem::size_of::<u32>()
    }

    /// Every present cell as (row, column, value), in (row, column) order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        let per_row = self.words_per_row.max(1);
        self.words.iter().enumerate().flat_map(move |(i, w)| {
            let (row, first) = ((i / per_row) as u32, (i % per_row) as u32 * 64);
            (0..64u32).filter(move |b| w.bits >> b & 1 != 0).map(move |b| (row, first + b, self.values[w.rank(b) as usize]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_cell_is_found_by_its_rank() {
        // Row 1's cells straddle a word boundary (63 and 64) and reach the last column.
        let t = RankedTable::new(3, 130, &[(1, 64, 11), (0, 5, 7), (1, 63, 10), (2, 0, 12), (1, 129, 13)]);
        assert_eq!(t.len(), 5);
        assert_eq!([t.get(0, 5), t.get(1, 63), t.get(1, 64), t.get(1, 129), t.get(2, 0)], [Some(7), Some(10), Some(11), Some(13), Some(12)]);
        // Absent cells, a column past the table's, a row past it.
        assert_eq!([t.get(0, 6), t.get(1, 65), t.get(1, 130), t.get(3, 0), t.get(0, u32::MAX)], [None; 5]);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![(0, 5, 7), (1, 63, 10), (1, 64, 11), (1, 129, 13), (2, 0, 12)]);
        assert_eq!(t.heap_bytes(), 3 * 3 * 16 + 5 * 4);
    }

    #[test]
    fn an_empty_table_has_no_cells() {
        let t = RankedTable::new(4, 0, &[]);
        assert_eq!((t.len(), t.get(0, 0), t.iter().count()), (0, None, 0));
        let t = RankedTable::new(0, 10, &[]);
        assert_eq!((t.len(), t.get(0, 3)), (0, None));
    }

    proptest! {
        /// The table answers like a map of its cells, for every cell of the table and
        /// a margin beyond it, and lists exactly its cells.
        #[test]
        fn answers_like_a_map(rows in 0usize..6, columns in 0usize..200, cells in proptest::collection::vec((0u32..6, 0u32..200, any::<u32>()), 0..150)) {
            let map: BTreeMap<(u32, u32), u32> = cells
                .into_iter()
                .filter(|&(r, c, _)| (r as usize) < rows && (c as usize) < columns)
                .map(|(r, c, v)| ((r, c), v))
                .collect();
            let entries: Vec<(u32, u32, u32)> = map.iter().map(|(&(r, c), &v)| (r, c, v)).collect();
            let t = RankedTable::new(rows, columns, &entries);
            prop_assert_eq!(t.len(), map.len());
            for r in 0..rows as u32 + 2 {
                for c in 0..columns as u32 + 70 {
                    prop_assert_eq!(t.get(r, c), map.get(&(r, c)).copied(), "cell ({}, {})", r, c);
                }
            }
            prop_assert_eq!(t.iter().collect::<Vec<_>>(), entries);
        }
    }
}
