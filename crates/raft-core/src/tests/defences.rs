//! Split-brain defences.
