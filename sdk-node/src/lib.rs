//! Node bindings for neurocloak-core: converts JS values, maps errors, registers.

use napi_derive::napi;

/// Version of the native addon, so the JS layer can refuse a mismatched build.
#[napi]
pub fn native_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
