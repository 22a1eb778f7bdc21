//! Delete Bitrix24 CRM items (`crm.item.delete`) from the browser.
//!
//! The crate is a JS-free core plus a thin WebAssembly binding:
//!
//! - [`id`] validates ids, [`config`] checks the client configuration (https rule included),
//! - [`envelope`] builds each request, [`response`] reads each answer (parsed by the engine's
//!   `JSON.parse`; under `cargo test` by `serde_json`, see `testing`),
//! - [`error`] is the one error type, [`secret`] keeps webhook secrets and tokens unprintable,
//! - [`budget`] paces bulk jobs by the portal's operating limit (pure, fake-clock friendly),
//! - [`bulk`] splits a bulk delete into batches and accounts for every id,
//! - [`policy`] decides retries, waits and pacing, [`call`] runs a call through a [`call::Env`],
//! - [`protocol`] names the numbers that cross between the wasm and runtime.js,
//! - [`executor`] runs the calls' futures on the wasm's one thread,
//! - `bindings` (wasm only) exposes it all to JS and holds the fetch and BX24 transports.

pub mod budget;
pub mod bulk;
pub mod call;
pub mod config;
pub mod envelope;
pub mod error;
pub mod executor;
pub mod id;
pub mod policy;
pub mod protocol;
pub mod response;
pub mod secret;

#[cfg(target_arch = "wasm32")]
pub mod bindings;

/// The wasm runs on one thread: a small free-list allocator instead of dlmalloc.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: wasm32-unknown-unknown without the atomics feature has a single thread.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub use error::{Error, Kind};

#[cfg(all(test, not(target_arch = "wasm32")))]
mod testing;
