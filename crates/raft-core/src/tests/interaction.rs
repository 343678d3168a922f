//! Interaction scripts (filled in below).
