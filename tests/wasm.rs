//! The binding layer in headless Chromium against the portal emulator (`cargo xtask test`
//! starts it and passes its URLs at compile time).
#![cfg(target_arch = "wasm32")]

use b24_crm_item::bindings::{client_delete_item, new_client};
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const EMULATOR: Option<&str> = option_env!("B24_EMULATOR_URL");
const WEBHOOK: Option<&str> = option_env!("B24_EMULATOR_WEBHOOK");

#[wasm_bindgen(inline_js = r#"
export async function control(base, path, body) {
  const init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) };
  const response = await fetch(base + '/_emulator/' + path, init);
  return response.json();
}
export function webhookOf(state, role) {
  return state.webhooks.find((w) => w.role === role).url;
}
export function itemsOf(state, type) {
  return state.items[String(type)] ?? [];
}
"#)]
extern "C" {
    fn control(base: &str, path: &str, body: JsValue) -> Promise;
    #[wasm_bindgen(js_name = webhookOf)]
    fn webhook_of(state: &JsValue, role: &str) -> String;
    #[wasm_bindgen(js_name = itemsOf)]
    fn items_of(state: &JsValue, entity_type_id: u32) -> Vec<f64>;
}

fn emulator() -> &'static str {
    EMULATOR.expect("B24_EMULATOR_URL must be set at compile time (cargo xtask test does it)")
}

async fn state() -> JsValue {
    JsFuture::from(control(emulator(), "state", JsValue::UNDEFINED))
        .await
        .unwrap()
}

async fn post(path: &str, body: &str) -> JsValue {
    JsFuture::from(control(
        emulator(),
        path,
        js_sys::JSON::parse(body).unwrap(),
    ))
    .await
    .unwrap()
}

fn config(pairs: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in pairs {
        Reflect::set(&object, &(*key).into(), value).unwrap();
    }
    object.into()
}

/// `newClient(config)`: a client's handle, or the `B24Error` it returned.
fn client(config: &JsValue) -> Result<u32, JsValue> {
    let made = new_client(config);
    made.as_f64().map(|handle| handle as u32).ok_or(made)
}

fn webhook_client(url: &str) -> u32 {
    client(&config(&[
        ("webhookUrl", url.into()),
        ("rateLimit", false.into()),
        ("maxRetries", 0.into()),
    ]))
    .unwrap()
}

fn field(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &key.into()).unwrap()
}

#[wasm_bindgen(module = "/pkg-template/runtime.js")]
extern "C" {
    fn install(wake: &JsValue);
}

/// `client.deleteItem(entityTypeId, id)`, with runtime.js wired to the wasm's `wake` first, as
/// the package entry does once the wasm is loaded.
async fn delete<T: Into<JsValue>>(
    client: u32,
    entity_type_id: f64,
    id: T,
) -> Result<JsValue, JsValue> {
    thread_local!(static INSTALLED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if !INSTALLED.replace(true) {
        let wake = Closure::<dyn Fn(u32, JsValue)>::new(b24_crm_item::bindings::wake);
        install(&wake.into_js_value());
    }
    JsFuture::from(Promise::from(client_delete_item(
        client,
        entity_type_id.into(),
        id.into(),
        JsValue::UNDEFINED,
    )))
    .await
}

/// Asserts the error's code, status and kind, and that it is a real `Error` named `B24Error`.
fn assert_error(error: &JsValue, code: &str, status: u32, kind: &str) {
    assert!(
        error.is_instance_of::<js_sys::Error>(),
        "not an Error: {error:?}"
    );
    assert_eq!(
        field(error, "name").as_string().as_deref(),
        Some("B24Error")
    );
    assert_eq!(field(error, "code").as_string().as_deref(), Some(code));
    assert_eq!(field(error, "status").as_f64(), Some(f64::from(status)));
    assert_eq!(field(error, "kind").as_string().as_deref(), Some(kind));
    assert_eq!(
        field(error, "method").as_string().as_deref(),
        Some("crm.item.delete")
    );
}

#[wasm_bindgen_test]
async fn deletes_an_item_and_reports_time() {
    let before = state().await;
    let id = items_of(&before, 1268)[0];
    let client = webhook_client(WEBHOOK.unwrap());
    let result = delete(client, 1268.0, id).await.unwrap();
    assert_eq!(field(&result, "entityTypeId").as_f64(), Some(1268.0));
    assert_eq!(field(&result, "id").as_f64(), Some(id));
    assert!(field(&field(&result, "time"), "start").as_f64().is_some());
    assert!(!items_of(&state().await, 1268).contains(&id));
    // Again: the item is gone.
    let error = delete(client, 1268.0, id).await.unwrap_err();
    assert_error(&error, "NOT_FOUND", 400, "api");
    assert_eq!(
        field(&error, "description").as_string().as_deref(),
        Some("Item not found")
    );
    assert_eq!(field(&error, "retryable").as_bool(), Some(false));
}

#[wasm_bindgen_test]
async fn each_documented_error() {
    let s = state().await;
    let id = items_of(&s, 1268)[1];
    let admin = webhook_client(&webhook_of(&s, "admin"));
    assert_error(
        &delete(admin, 999.0, id).await.unwrap_err(),
        "NOT_FOUND",
        400,
        "api",
    );
    assert_error(
        &delete(admin, 5.0, 1.0).await.unwrap_err(),
        "ENTITY_TYPE_NOT_SUPPORTED",
        400,
        "api",
    );
    assert_error(
        &delete(webhook_client(&webhook_of(&s, "no_delete")), 1268.0, id)
            .await
            .unwrap_err(),
        "ACCESS_DENIED",
        403,
        "api",
    );
    assert_error(
        &delete(webhook_client(&webhook_of(&s, "extranet")), 1268.0, id)
            .await
            .unwrap_err(),
        "allowed_only_intranet_user",
        403,
        "api",
    );
    assert_error(
        &delete(webhook_client(&webhook_of(&s, "no_crm_scope")), 1268.0, id)
            .await
            .unwrap_err(),
        "insufficient_scope",
        403,
        "api",
    );
    let wrong = [emulator(), "/rest/1/wrongsecret/"].concat();
    assert_error(
        &delete(webhook_client(&wrong), 1268.0, id)
            .await
            .unwrap_err(),
        "NO_AUTH_FOUND",
        401,
        "api",
    );
    // None of those deleted the item.
    assert!(items_of(&state().await, 1268).contains(&id));
}

#[wasm_bindgen_test]
async fn expired_oauth_token() {
    let token = post("oauth/token", r#"{"lifetime":0}"#).await;
    let client = client(&config(&[
        ("portal", emulator().into()),
        ("accessToken", field(&token, "access_token")),
        ("rateLimit", false.into()),
    ]))
    .unwrap();
    let error = delete(client, 1268.0, 1.0).await.unwrap_err();
    assert_error(&error, "expired_token", 401, "api");
}

#[wasm_bindgen_test]
async fn an_html_page_is_a_bad_response() {
    post(
        "faults",
        r#"{"method":"crm.item.delete","count":1,"fault":{"kind":"html","status":502}}"#,
    )
    .await;
    let id = items_of(&state().await, 2)[0];
    let error = delete(webhook_client(WEBHOOK.unwrap()), 2.0, id)
        .await
        .unwrap_err();
    assert_error(&error, "BAD_RESPONSE", 502, "response");
    assert_eq!(field(&error, "retryable").as_bool(), Some(true));
}

#[wasm_bindgen_test]
async fn invalid_arguments_send_nothing() {
    let before = field(&field(&state().await, "requests"), "total").as_f64();
    let client = webhook_client(WEBHOOK.unwrap());
    for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY, 9007199254740992.0] {
        let error = delete(client, bad, 1.0).await.unwrap_err();
        assert_eq!(
            field(&error, "code").as_string().as_deref(),
            Some("INVALID_ARGUMENT")
        );
        assert_eq!(
            field(&error, "kind").as_string().as_deref(),
            Some("argument")
        );
    }
    for bad in ["01", " 1", "1e3", ""] {
        let error = delete(client, 1268.0, bad).await.unwrap_err();
        assert_eq!(
            field(&error, "code").as_string().as_deref(),
            Some("INVALID_ARGUMENT"),
            "{bad:?}"
        );
    }
    assert_eq!(
        field(&field(&state().await, "requests"), "total").as_f64(),
        before
    );
}

#[wasm_bindgen_test]
fn invalid_configs_throw_without_the_secret() {
    for url in [
        "http://acme.example.com/rest/1/s3cr3tvalue/",
        "https://acme.example.com/rest/s3cr3tvalue/",
    ] {
        let error = client(&config(&[("webhookUrl", url.into())]))
            .err()
            .unwrap();
        assert_eq!(
            field(&error, "code").as_string().as_deref(),
            Some("INVALID_ARGUMENT")
        );
        assert_eq!(field(&error, "kind").as_string().as_deref(), Some("config"));
        let text = [
            field(&error, "message").as_string().unwrap(),
            field(&error, "stack").as_string().unwrap_or_default(),
            js_sys::JSON::stringify(&error)
                .unwrap()
                .as_string()
                .unwrap(),
        ]
        .concat();
        assert!(!text.contains("s3cr3tvalue"), "{text}");
    }
}

#[wasm_bindgen_test]
async fn a_dropped_client_frees_its_slot_and_its_call_in_flight_still_ends() {
    let ids = items_of(&state().await, 1268);
    let first = webhook_client(WEBHOOK.unwrap());
    delete(first, 1268.0, ids[0]).await.unwrap();
    // A call in flight, then its client dropped (as index.js does when its Client is collected).
    let in_flight = Promise::from(client_delete_item(
        first,
        1268.0.into(),
        ids[1].into(),
        JsValue::UNDEFINED,
    ));
    b24_crm_item::bindings::drop_client(first);
    let second = webhook_client(WEBHOOK.unwrap());
    assert_eq!(second, first, "the freed slot is used again");
    let result = JsFuture::from(in_flight).await.unwrap();
    assert_eq!(field(&result, "id").as_f64(), Some(ids[1]));
    assert!(!items_of(&state().await, 1268).contains(&ids[1]));
}
