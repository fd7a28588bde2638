//! Measuring Crimson: what the load benchmark (`bench`), the compression benchmark
//! (`compression`), the soak test (`soak`) and the Autobahn programs share.

pub mod deflate_client;
pub mod measure;
pub mod server;
