//! Node bindings for neurocloak-core (npm package `neurocloak`). This crate only converts JS
//! values, maps errors to stable `err.code` strings and registers the `NativeMonitor` class;
//! index.js adds the JS-side packing, the predict-function wrapper and the exit hooks.

mod convert;
mod error;
mod monitor;
mod summary;

use napi_derive::napi;

pub use error::Code;
pub use monitor::NativeMonitor;

/// Version of the native addon, so the JS layer can refuse a mismatched build.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
