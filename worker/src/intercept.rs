//! CDN request interception: every path that is not an API route is proxied to `ORIGIN_URL`.
//! HTML responses get their `data-edgerec-slot` elements filled with recommendations and the
//! tracker `<script>` appended to `<body>`, through the runtime's `HTMLRewriter` (reached with
//! wasm-bindgen, as the `worker` crate has no wrapper); it streams, so the page is not buffered.
//! Everything else passes through untouched: status, headers, streaming body.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The runtime's streaming HTML rewriter.
    pub type HTMLRewriter;

    #[wasm_bindgen(constructor, catch)]
    fn new() -> Result<HTMLRewriter, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn on(this: &HTMLRewriter, selector: &str, handlers: &Object) -> Result<HTMLRewriter, JsValue>;

    #[wasm_bindgen(method, catch)]
    fn transform(
        this: &HTMLRewriter,
        response: &web_sys::Response,
    ) -> Result<web_sys::Response, JsValue>;

    /// An element seen by the rewriter.
    pub type Element;

    #[wasm_bindgen(method, js_name = getAttribute)]
    fn get_attribute(this: &Element, name: &str) -> Option<String>;

    #[wasm_bindgen(method, js_name = setInnerContent, catch)]
    fn set_inner_content(this: &Element, content: &str, options: &JsValue) -> Result<(), JsValue>;

    #[wasm_bindgen(method, js_name = setAttribute, catch)]
    fn set_attribute(this: &Element, name: &str, value: &str) -> Result<(), JsValue>;

    #[wasm_bindgen(method, catch)]
    fn append(this: &Element, content: &str, options: &JsValue) -> Result<(), JsValue>;
}

/// One rendered recommendation list (HTML) and its tier, per slot name.
pub struct SlotFill {
    /// Rendered list items.
    pub html: String,
    /// Tier that produced them.
    pub tier: &'static str,
}

/// Rewrites an HTML response: slots filled by `fill(slot name)`, tracker script appended.
pub fn rewrite(
    resp: web_sys::Response,
    fill: impl Fn(&str) -> Option<SlotFill> + 'static,
    tracker_src: &str,
) -> Result<web_sys::Response, JsValue> {
    let html = JsValue::from(Object::new());
    Reflect::set(&html, &"html".into(), &JsValue::TRUE)?;
    let opts = html.clone();
    let slot_handler = Closure::<dyn Fn(Element)>::new(move |el: Element| {
        let Some(slot) = el.get_attribute("data-edgerec-slot") else {
            return;
        };
        if let Some(f) = fill(&slot) {
            let _ = el.set_inner_content(&f.html, &opts);
            let _ = el.set_attribute("data-edgerec-filled", f.tier);
        }
    });
    let script = format!(
        r#"<script type="module" src="{}" data-edgerec-tracker></script>"#,
        edgerec::api::escape_html(tracker_src)
    );
    let body_handler = Closure::<dyn Fn(Element)>::new(move |el: Element| {
        let _ = el.append(&script, &html);
    });
    let slots = Object::new();
    // Ownership passes to the JS handler objects, which live as long as the rewriter does.
    Reflect::set(&slots, &"element".into(), &slot_handler.into_js_value())?;
    let body = Object::new();
    Reflect::set(&body, &"element".into(), &body_handler.into_js_value())?;
    let rewriter = HTMLRewriter::new()?
        .on("[data-edgerec-slot]", &slots)?
        .on("body", &body)?;
    rewriter.transform(&resp)
}

/// Whether a response is HTML.
pub fn is_html(resp: &web_sys::Response) -> bool {
    resp.headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/html"))
}

/// The same response (status, headers, streaming body) with headers that may be changed:
/// responses from `fetch` and `transform` have immutable headers.
pub fn with_mutable_headers(resp: web_sys::Response) -> Result<web_sys::Response, JsValue> {
    let headers = web_sys::Headers::new_with_headers(&resp.headers())?;
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status());
    init.set_status_text(&resp.status_text());
    init.set_headers(&headers);
    web_sys::Response::new_with_opt_readable_stream_and_init(resp.body().as_ref(), &init)
}
