//! The `neurocloak.errors` exception tree.

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
    ShippingError,
    NeuroCloakError,
    "The SDK could not hand data to the agent."
);
create_exception!(
    neurocloak.errors,
    ClosedError,
    NeuroCloakError,
    "The monitor was used after shutdown()."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("NeuroCloakError", py.get_type::<NeuroCloakError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DataError", py.get_type::<DataError>())?;
    m.add("ShippingError", py.get_type::<ShippingError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}
