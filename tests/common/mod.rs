//! Helpers shared by the integration tests.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

pub mod cgroup;
pub mod faultfs;
pub mod frames;
pub mod mounts;
pub mod netns;
pub mod ports;
pub mod sched;
pub mod target;
