//! A stream event and its records, up to the values of each good document:
//! the event reader ([`event`]), one record whatever its source
//! ([`source`]), decompression ([`decompress`]), the record formats
//! ([`format`]) with the JSON document reader ([`document`]), KPL
//! aggregation ([`kpl`]), dead letters ([`dead_letter`]), sequence
//! numbers ([`sequence`]), what a batch's decode saw for its metrics
//! ([`observed`]), and the Lambda runtime with the event read once
//! ([`runtime`]).

pub mod dead_letter;
pub mod decompress;
pub mod document;
pub mod event;
pub mod format;
pub mod kpl;
pub mod observed;
pub mod runtime;
pub mod sequence;
pub mod source;
