//! NeuroCloak SDK core: records predictions into mergeable per-window profiles
//! (`sketch`, `profile`, `monitor`) and ships closed windows to an agent (`ship`).

pub mod ship;
