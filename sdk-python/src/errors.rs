//! The `neurocloak.errors` exception tree and the one mapping from core errors to it.

use neurocloak_core::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    neurocloak.errors,
    NeuroCloakError,
    PyException,
    "Base class of every error the NeuroCloak SDK raises."
);
create_exception!(
    neurocloak.errors,
    ConfigError,
    NeuroCloakError,
    "The monitor was configured with an invalid identity, schema or option."
);
create_exception!(
    neurocloak.errors,
    DataError,
    NeuroCloakError,
    "A logged value does not fit the schema (raised only in strict mode)."
);
create_exception!(
    neurocloak.errors,
    BatchError,
    NeuroCloakError,
    "A batch is malformed: columns of different lengths, codes out of range, bad types."
);
create_exception!(
    neurocloak.errors,
    ShippingError,
    NeuroCloakError,
    "The SDK could not hand data to the agent."
);
create_exception!(
    neurocloak.errors,
    FlushTimeoutError,
    NeuroCloakError,
    "flush() or shutdown() did not finish within its timeout."
);
create_exception!(
    neurocloak.errors,
    ClosedError,
    NeuroCloakError,
    "The monitor was used after shutdown()."
);
create_exception!(
    neurocloak.errors,
    ProtocolError,
    NeuroCloakError,
    "A profile or message is invalid or cannot be merged."
);

/// The single place where core errors become Python exceptions.
pub struct PyCoreError(pub CoreError);

impl From<CoreError> for PyCoreError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(PyCoreError(e): PyCoreError) -> Self {
        let msg = e.to_string();
        match e {
            CoreError::Config(_) => ConfigError::new_err(msg),
            CoreError::Data { .. } => DataError::new_err(msg),
            CoreError::Batch(_) => BatchError::new_err(msg),
            CoreError::Ship(_) => ShippingError::new_err(msg),
            CoreError::Timeout(_) => FlushTimeoutError::new_err(msg),
            CoreError::Shutdown => ClosedError::new_err(msg),
            CoreError::InvalidProto { .. } | CoreError::Incompatible(_) => {
                ProtocolError::new_err(msg)
            }
        }
    }
}

/// Binding-level results: core errors convert with `?`.
pub type PyCoreResult<T> = Result<T, PyCoreError>;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NeuroCloakError", py.get_type::<NeuroCloakError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("BatchError", py.get_type::<BatchError>())?;
    m.add("ShippingError", py.get_type::<ShippingError>())?;
    m.add("FlushTimeoutError", py.get_type::<FlushTimeoutError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    Ok(())
}
