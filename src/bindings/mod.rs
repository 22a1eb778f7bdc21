//! The JS surface: the only module that touches wasm-bindgen.
//!
//! - this file: the exports index.js calls (clients by handle, `deleteItem`, `deleteItems`,
//!   `wake`), and [`to_js_error`], where every rejection's `B24Error` is made;
//! - [`imports`]: runtime.js's functions and the engine's clocks;
//! - [`env`]: [`env::WebEnv`], the platform [`crate::call::Env`] (timers, fetch and BX24, token
//!   sources, the abort signal);
//! - [`read`]: the argument and config readers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::prelude::*;

mod env;
mod imports;
mod read;

use crate::bulk::{BulkOptions, BulkReport};
use crate::call;
use crate::config::Endpoint;
use crate::envelope;
use crate::error::Error;
use crate::executor;
use env::WebEnv;
use imports::{add_failed, deleted, finish, make_error, progress, reject, report, task};
use read::{read_config, read_id, read_ids, read_options, ENTITY_TYPE_ID};

thread_local! {
    static NEXT_KEY: Cell<u32> = const { Cell::new(0) };
    /// The clients index.js made, by handle (the index); a slot empties when index.js drops it.
    static CLIENTS: RefCell<Vec<Option<Client>>> = const { RefCell::new(Vec::new()) };
}

/// Where runtime.js hands back what a promise given to `resume(promise, slot)` settled with. The
/// package entry passes this export to runtime.js's `install` once the wasm is loaded.
#[wasm_bindgen]
pub fn wake(slot: u32, value: JsValue) {
    env::wake(slot, value);
}

/// A new call's key and its promise, which `finish(key, …)` settles.
fn new_task() -> (i32, JsValue) {
    let key = NEXT_KEY.replace(NEXT_KEY.get().wrapping_add(1)) as i32;
    (key, task(key))
}

/// A Bitrix24 client: one configuration, one pacing bucket, one token. JS holds it by handle
/// (a plain number, not a wasm-bindgen class).
struct Client {
    core: Rc<call::Client>,
    platform: Platform,
}

/// What each call's [`WebEnv`] is made from.
#[derive(Clone)]
struct Platform {
    on_token_expired: Option<JsValue>,
    /// The client reaches the portal through the enclosing Bitrix24 frame.
    frame: bool,
}

impl Platform {
    fn env(self, signal: JsValue) -> WebEnv {
        WebEnv {
            signal,
            cause: RefCell::new(JsValue::UNDEFINED),
            answer: RefCell::new(JsValue::UNDEFINED),
            on_token_expired: self.on_token_expired,
            frame: self.frame,
        }
    }
}

/// Checks `config` and builds a client: its handle, or the `B24Error` (`INVALID_ARGUMENT`) when
/// the config is invalid (returned, not thrown: index.js throws it).
#[wasm_bindgen(js_name = newClient)]
pub fn new_client(config: &JsValue) -> JsValue {
    match Client::new(config) {
        Ok(client) => CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            // The first free slot, or a new one at the end.
            let handle = match clients.iter().position(Option::is_none) {
                Some(free) => {
                    clients[free] = Some(client);
                    free
                }
                None => {
                    clients.push(Some(client));
                    clients.len() - 1
                }
            };
            JsValue::from(handle as u32)
        }),
        Err(error) => error,
    }
}

/// Frees a client's slot (index.js does so when its JS `Client` is garbage-collected). Calls in
/// flight keep what they use.
#[wasm_bindgen(js_name = dropClient)]
pub fn drop_client(handle: u32) {
    CLIENTS.with(|clients| clients.borrow_mut()[handle as usize] = None);
}

/// Deletes one CRM item. Resolves `{entityTypeId, id, time?}`; rejects with a `B24Error`.
#[wasm_bindgen(js_name = clientDeleteItem)]
pub fn client_delete_item(
    handle: u32,
    entity_type_id: JsValue,
    id: JsValue,
    options: JsValue,
) -> JsValue {
    // Arguments are checked before anything async: a bad one rejects at once.
    let checked = (|| {
        let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
        let id = read_id(
            &id,
            "id must be a positive safe integer or its decimal string",
        )?;
        Ok::<_, &str>((entity_type_id, id, read_options(&options, false)?))
    })();
    let (entity_type_id, id, options) = match checked {
        Ok(checked) => checked,
        Err(why) => return rejected(why, envelope::DELETE),
    };
    let (core, env) = Client::call(handle, options.signal);
    let (key, promise) = new_task();
    executor::spawn(async move {
        let (ok, value) = match core
            .delete_item(&env, entity_type_id, id, options.call)
            .await
        {
            Ok(answer) => (
                true,
                deleted(
                    entity_type_id as f64,
                    id as f64,
                    answer.time.is_some().into(),
                    &env.answer.borrow(),
                ),
            ),
            Err(e) => (false, env.error(&e.error, e.attempts, envelope::DELETE)),
        };
        finish(key, ok.into(), &value);
    });
    promise
}

/// Deletes many items of one type through `batch`. Resolves a report that accounts for every
/// distinct id; rejects only for invalid arguments or `NOT_CONFIGURED`, before any request.
#[wasm_bindgen(js_name = clientDeleteItems)]
pub fn client_delete_items(
    handle: u32,
    entity_type_id: JsValue,
    ids: JsValue,
    options: JsValue,
) -> JsValue {
    let checked = (|| {
        let entity_type_id = read_id(&entity_type_id, ENTITY_TYPE_ID)?;
        let ids = read_ids(&ids)?;
        Ok::<_, &str>((entity_type_id, ids, read_options(&options, true)?))
    })();
    let (entity_type_id, ids, options) = match checked {
        Ok(checked) => checked,
        Err(why) => return rejected(why, envelope::BATCH),
    };
    let (core, env) = Client::call(handle, options.signal);
    let bulk_options = BulkOptions {
        timeout_ms: options.call.timeout_ms,
        halt_on_error: options.halt_on_error,
    };
    let on_progress = options.on_progress;
    let (key, promise) = new_task();
    executor::spawn(async move {
        let report = core
            .delete_items(&env, entity_type_id, &ids, bulk_options, |done, total| {
                if !on_progress.is_undefined() {
                    // A throwing onProgress must not break the run: progress() swallows it.
                    progress(&on_progress, done as f64, total as f64);
                }
            })
            .await;
        let (ok, value) = match report {
            Ok(report) => (true, bulk_report(&report, &env)),
            Err(e) => (false, env.error(&e.error, e.attempts, envelope::BATCH)),
        };
        finish(key, ok.into(), &value);
    });
    promise
}

impl Client {
    fn new(config: &JsValue) -> Result<Client, JsValue> {
        let (config, on_token_expired) = read_config(config)
            .map_err(|why| to_js_error(&Error::InvalidConfig(why), 0, "", &JsValue::UNDEFINED))?;
        let frame = config.endpoint == Endpoint::Frame;
        Ok(Client {
            core: Rc::new(call::Client::new(config)),
            platform: Platform {
                on_token_expired,
                frame,
            },
        })
    }

    /// What one call of the client `handle` runs with: its core and a fresh environment.
    fn call(handle: u32, signal: JsValue) -> (Rc<call::Client>, WebEnv) {
        CLIENTS.with(|clients| {
            let clients = clients.borrow();
            let client = clients[handle as usize]
                .as_ref()
                .expect("index.js calls only the clients it holds");
            (client.core.clone(), client.platform.clone().env(signal))
        })
    }
}

/// A promise rejected with the `B24Error` for an argument error (nothing was sent).
fn rejected(why: &'static str, method: &str) -> JsValue {
    reject(&to_js_error(
        &Error::InvalidArgument(why),
        0,
        method,
        &JsValue::UNDEFINED,
    ))
}

fn bulk_report(report: &BulkReport, env: &WebEnv) -> JsValue {
    let result = self::report(&report.deleted, &report.not_found);
    for f in &report.failed {
        let error = env.error(&f.error, f.attempts, f.method);
        add_failed(&result, f.id as f64, &error);
    }
    result
}

/// The one place a core error becomes a JS `B24Error`.
fn to_js_error(e: &Error, attempts: u32, method: &str, cause: &JsValue) -> JsValue {
    make_error(
        e.code().as_bytes(),
        e.description().as_bytes(),
        e.status(),
        method.as_bytes(),
        e.kind().as_str().as_bytes(),
        e.retryable(),
        attempts,
        cause,
    )
}
