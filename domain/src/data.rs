//! TEMPORARY shim (replaced by the data module).
