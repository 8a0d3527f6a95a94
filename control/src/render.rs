//! Offline renderings for people: plain-text tables (`table`), the CN2-style tables of
//! `palisade rules` (`rules`), the pod × pod reachability grid of `palisade matrix`
//! (`matrix`: text, HTML, SVG) and the worded reasons of `palisade explain` (`explain`).
//! Verdicts always come from the compiled snapshot's own `classify`; this module only
//! lays them out and describes the policies behind them.

pub mod table;
pub mod rules;
