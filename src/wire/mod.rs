//! Wire formats (placeholder, filled by the wire work).
