//! The binary's own subcommands (the library holds everything they talk to).

pub mod ctl;
