//! Integration tests of device_status on moto (skeleton).
