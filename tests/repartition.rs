//! Integration tests of repartition on moto (skeleton).
