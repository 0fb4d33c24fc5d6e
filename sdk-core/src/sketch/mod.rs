//! Mergeable streaming sketches: each summarises one stream, merges with the summary of another
//! stream as if both had been one, and round-trips losslessly through its proto message
//! (decoding validates, so hostile bytes give an error instead of a panic or a huge allocation).

mod bins;
mod counters;
mod frequent;
mod hll;
mod kll;
mod latency;
mod moments;
pub mod rng;
mod score;

pub use bins::{FixedBins, MAX_EDGES};
pub use counters::Counters;
pub(crate) use frequent::short_eq;
pub use frequent::{DEFAULT_CAPACITY as DEFAULT_ITEMS_CAPACITY, FrequentItems, MAX_VALUE_BYTES};
pub use hll::{DEFAULT_PRECISION as DEFAULT_HLL_PRECISION, Hll};
pub use kll::{
    DEFAULT_K as DEFAULT_KLL_K, DEFAULT_SEED as DEFAULT_KLL_SEED, Kll, SortedView,
    rank_error_bound, uniform_rank_error_bound,
};
pub use latency::{Latency, MAX_LATENCY_US};
pub use moments::Moments;
pub use score::{SCORE_BINS, ScoreHistogram};
