//! One module per subcommand; each exposes `Args` (clap) and `main(Args)`.
pub mod explain;
pub mod flows;
pub mod live;
pub mod matrix;
pub mod policy;
pub mod replay;
pub mod rules;
pub mod run;
pub mod stats;
pub mod verdicts;
