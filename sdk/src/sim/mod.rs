//! Simulated TDX platform (feature `sim`). (in progress)
