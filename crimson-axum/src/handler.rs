//! [`CrimsonHandler`]: an async fn that takes axum extractors and then the session.

use std::future::Future;
use std::pin::Pin;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::session::CrimsonSession;

/// A handler after its extractors ran: it only waits for the session.
pub(crate) type Prepared<Up, Down> =
    Box<dyn FnOnce(CrimsonSession<Up, Down>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

mod sealed {
    /// Implemented, by the macro that implements [`CrimsonHandler`](super::CrimsonHandler),
    /// only for the functions it is implemented for: no other type can implement it.
    #[diagnostic::on_unimplemented(
        message = "`CrimsonHandler` is sealed: `{Self}` cannot implement it",
        label = "not an async fn(extractors..., CrimsonSession<{Up}, {Down}>)",
        note = "`CrimsonHandler` is implemented for every `async fn` that takes at most eight axum extractors, then the `CrimsonSession<Up, Down>`: route such a function instead"
    )]
    pub trait Sealed<T, Up, Down> {}
}

/// An async fn that handles a Crimson session.
///
/// It takes up to eight axum extractors (`State`, `HeaderMap`, `Query`, `ConnectInfo`, your
/// own `FromRequestParts` auth), then the [`CrimsonSession`] last. The extractors run before
/// the upgrade: a rejection answers its own HTTP response and nothing is upgraded.
///
/// The trait is sealed: it is implemented for such functions, and no other type can implement
/// it.
///
/// ```
/// use axum::extract::{Query, State};
/// use crimson_axum::CrimsonSession;
///
/// #[derive(Clone)]
/// struct App;
///
/// #[derive(serde::Deserialize)]
/// struct Room {
///     name: String,
/// }
///
/// async fn chat(
///     State(_app): State<App>,
///     Query(room): Query<Room>,
///     mut session: CrimsonSession<String, String>,
/// ) {
///     while let Some(text) = session.recv().await {
///         let _ = session.send(format!("[{}] {text}", room.name)).await;
///     }
/// }
/// # let _ = chat;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Crimson handler for `CrimsonSession<{Up}, {Down}>`",
    label = "not an async fn(extractors..., CrimsonSession<{Up}, {Down}>)",
    note = "a Crimson handler is an `async fn` whose last argument is the `CrimsonSession<Up, Down>`, after at most eight axum extractors that implement `FromRequestParts` (no body extractors: a WebSocket upgrade has no body)",
    note = "the route's `Up` and `Down` must be the ones its config name (`ConfigName<Up, Down>`) and its `CrimsonConfig` were made for"
)]
pub trait CrimsonHandler<T, S, Up, Down>:
    Clone + Send + Sync + Sized + 'static + sealed::Sealed<T, Up, Down>
{
    /// Runs the extractors; on success returns the handler, ready for its session.
    #[doc(hidden)]
    fn prepare<'a>(
        self,
        parts: &'a mut Parts,
        state: &'a S,
    ) -> impl Future<Output = Result<Prepared<Up, Down>, Response>> + Send + 'a;
}

macro_rules! impl_handler {
    ($($ty:ident),*) => {
        // The seal, for the same shape of function as the impl below and nothing else.
        impl<F, Fut, Up, Down, $($ty,)*> sealed::Sealed<($($ty,)*), Up, Down> for F
        where
            F: FnOnce($($ty,)* CrimsonSession<Up, Down>) -> Fut,
        {
        }

        #[allow(non_snake_case, unused_variables, unused_mut)]
        impl<F, Fut, S, Up, Down, $($ty,)*> CrimsonHandler<($($ty,)*), S, Up, Down> for F
        where
            F: FnOnce($($ty,)* CrimsonSession<Up, Down>) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = ()> + Send + 'static,
            S: Send + Sync + 'static,
            // No `CrimsonMessage` bounds here: a message type without the derive is reported
            // by `RouterExt::crimson`'s own bound, with a message that says so.
            Up: Send + 'static,
            Down: Send + 'static,
            $($ty: FromRequestParts<S> + Send + 'static,)*
        {
            fn prepare<'a>(
                self,
                parts: &'a mut Parts,
                state: &'a S,
            ) -> impl Future<Output = Result<Prepared<Up, Down>, Response>> + Send + 'a {
                async move {
                    $(
                        let $ty = match $ty::from_request_parts(parts, state).await {
                            Ok(value) => value,
                            Err(rejection) => return Err(rejection.into_response()),
                        };
                    )*
                    let prepared: Prepared<Up, Down> = Box::new(move |session| {
                        Box::pin(self($($ty,)* session))
                    });
                    Ok(prepared)
                }
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);
