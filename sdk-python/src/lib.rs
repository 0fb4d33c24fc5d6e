//! `neurocloak._native`: the PyO3 module behind the `neurocloak` Python package.
//! It only converts types, maps errors and registers; all logic lives in `neurocloak-core`.

mod array;
mod batch;
mod cell;
mod config;
mod errors;
mod fork;
mod monitor;
mod row;
mod snapshot;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<monitor::PyMonitor>()?;
    m.add_function(wrap_pyfunction!(fork::_fork_gate_close, m)?)?;
    m.add_function(wrap_pyfunction!(fork::_fork_gate_open, m)?)?;
    Ok(())
}
