//! NeuroCloak SDK core.
