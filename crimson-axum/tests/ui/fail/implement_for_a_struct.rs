//! `CrimsonHandler` is sealed: a type of the caller's own cannot implement it, even with a
//! `prepare` of the right shape.

use std::future::Future;
use std::pin::Pin;

use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use crimson_axum::{CrimsonHandler, CrimsonSession};

type Prepared = Box<
    dyn FnOnce(CrimsonSession<String, String>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send,
>;

#[derive(Clone)]
struct MyHandler;

impl CrimsonHandler<(), (), String, String> for MyHandler {
    fn prepare<'a>(
        self,
        _parts: &'a mut Parts,
        _state: &'a (),
    ) -> impl Future<Output = Result<Prepared, Response>> + Send + 'a {
        async move { Err(().into_response()) }
    }
}

fn main() {}
