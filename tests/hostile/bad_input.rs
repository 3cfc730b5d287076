//! Bad input through the real broker.
