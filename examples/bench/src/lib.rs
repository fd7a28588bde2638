//! Measuring Crimson: what the load benchmark (`bench`), the soak test (`soak`) and the
//! Autobahn programs share.

pub mod measure;
