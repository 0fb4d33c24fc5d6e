//! The NeuroCloak wire contract: prost messages and tonic services generated from
//! `proto/neurocloak/v1/*.proto`. See `proto/README.md` for the compatibility rules.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("neurocloak.v1");
}

pub use v1::*;
