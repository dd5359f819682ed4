//! AoE/ATA target semantics (placeholder).
