//! Helpers shared by the integration tests.

#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
pub mod faultfs;
#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
pub mod frames;
#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
pub mod mounts;
#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
pub mod netns;
#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]
pub mod target;
