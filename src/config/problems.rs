//! The problems found while validating a configuration.
//!
//! Contract: a check that fails pushes a `ConfigError` (span and message) and carries on;
//! nothing here decides what is a problem, so every validating module (`acl.rs`,
//! `target.rs`, `device.rs`, ...) can report into one `Problems` without depending on the
//! others.

use std::ops::Range;

use super::ConfigError;

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    errors: Vec<ConfigError>,
}

impl Problems {
    /// Records a problem at `span` (an empty span means "no location").
    pub fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::new(Some(span), message.into()));
    }

    /// Records a problem that has no location (it comes from a default).
    pub fn push_unlocated(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError::new(None, message.into()));
    }

    /// Records a problem at `span` if there is one, otherwise without location.
    pub fn push_at(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(span, message.into()));
    }

    /// Adds a reference to another place ("device "a" is at line 7") to the last problem.
    pub fn see_also(&mut self, label: String, span: Range<usize>) {
        if let Some(last) = self.errors.last_mut() {
            last.see_also = Some((label, span));
        }
    }

    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }
}
