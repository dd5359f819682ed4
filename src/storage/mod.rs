//! Storage engines (placeholder).
