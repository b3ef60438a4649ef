//! Integration tests of scheduler on moto (skeleton).
