use std::sync::Arc;

use serde_json::json;

use super::*;

fn code(name: &str, source: &str) -> FunctionCode {
    FunctionCode {
        name: name.into(),
        version: "E1".into(),
        source: Arc::from(source),
        runtime: JsRuntime::V2,
        store: None,
    }
}

fn view<'a>(uri: &'a str, query: Option<&'a str>, headers: Vec<(&'a str, &'a str)>) -> RequestView<'a> {
    RequestView {
        method: "GET",
        uri,
        query,
        headers,
        viewer_ip: Some("192.0.2.7".into()),
        distribution_id: "EDIST",
        distribution_domain: "127.0.0.2:8580",
        request_id: "r1".into(),
    }
}

const REWRITE: &str = r#"
function handler(event) {
    var request = event.request;
    if (request.uri.endsWith('/')) { request.uri += 'index.html'; }
    request.headers['x-from-function'] = { value: request.querystring.lang ? request.querystring.lang.value : 'none' };
    return request;
}"#;

#[test]
fn a_viewer_request_function_rewrites_the_uri_and_its_headers() {
    let event = request_event(&view(
        "/docs/",
        Some("lang=de&x=1&x=2"),
        vec![("host", "h"), ("cookie", "a=1; b=2")],
    ));
    assert_eq!(
        event["request"]["querystring"]["x"]["multiValue"],
        json!([{ "value": "1" }, { "value": "2" }])
    );
    assert_eq!(event["request"]["cookies"]["b"]["value"], "2");
    assert!(
        event["request"]["headers"].get("cookie").is_none(),
        "cookies are their own field, as CloudFront's"
    );
    let output = invoke(&code("rewrite", REWRITE), &event).unwrap().output;
    let changes = request_outcome(&output).unwrap().unwrap();
    assert_eq!(changes.uri, "/docs/index.html");
    assert_eq!(changes.query.as_deref(), Some("lang=de&x=1&x=2"));
    assert!(changes.headers.contains(&("x-from-function".into(), "de".into())));
    assert!(changes.headers.contains(&("cookie".into(), "a=1; b=2".into())));
}

#[test]
fn a_function_can_answer_and_set_cookies_and_headers_on_a_response() {
    let deny = code(
        "deny",
        r#"function handler(event) {
            return { statusCode: 302, statusDescription: 'Found', headers: { location: { value: 'https://example.com/login' } },
                     cookies: { seen: { value: '1', attributes: 'Path=/' } }, body: 'go' };
        }"#,
    );
    let output = invoke(&deny, &request_event(&view("/a", None, vec![]))).unwrap().output;
    let generated = request_outcome(&output).unwrap().unwrap_err();
    assert_eq!((generated.status, generated.body.as_slice()), (302, &b"go"[..]));
    assert!(generated.headers.contains(&("location".into(), "https://example.com/login".into())));
    assert!(generated.headers.contains(&("set-cookie".into(), "seen=1; Path=/".into())));

    let stamp = code(
        "stamp",
        r#"function handler(event) { var r = event.response; r.headers['x-stamp'] = { value: 'v' };
            delete r.headers['x-secret']; if (r.statusCode === 404) { r.statusCode = 410; } return r; }"#,
    );
    let request = view("/a", None, vec![]);
    let response = ResponseView {
        status: 404,
        headers: vec![("x-secret", "s"), ("content-type", "text/plain"), ("set-cookie", "id=7; HttpOnly")],
    };
    let event = response_event(request_event(&request), &response);
    assert_eq!(
        event["response"]["cookies"]["id"],
        json!({ "value": "7", "attributes": "HttpOnly" })
    );
    let changes = response_outcome(&invoke(&stamp, &event).unwrap().output).unwrap();
    assert_eq!(changes.status, 410);
    assert!(changes.headers.contains(&("x-stamp".into(), "v".into())));
    assert!(changes.headers.contains(&("set-cookie".into(), "id=7; HttpOnly".into())));
    assert!(!changes.headers.iter().any(|(name, _)| name == "x-secret"));
}

#[test]
fn hostile_functions_fail_and_leave_nothing_behind() {
    let event = request_event(&view("/a", None, vec![]));
    let run = |name: &str, source: &str| invoke(&code(name, source), &event);
    assert!(matches!(
        run("loop", "function handler(e) { while (true) {} }"),
        Err(FunctionError::OverBudget)
    ));
    let thrown = run("throw", "function handler(e) { throw new Error('boom'); }").unwrap_err();
    assert_eq!(thrown, FunctionError::Thrown("Error: boom".into()));
    let fs = run(
        "fs",
        "function handler(e) { require('fs').readFileSync('/etc/passwd'); return e.request; }",
    )
    .unwrap_err();
    assert!(
        matches!(&fs, FunctionError::Thrown(text) if text.contains("Cannot find module 'fs'")),
        "{fs:?}"
    );
    for (name, source) in [
        ("fetch", "function handler(e) { fetch('http://127.0.0.1/'); }"),
        ("std", "function handler(e) { std.loadFile('/etc/passwd'); }"),
        ("os", "function handler(e) { os.exec(['id']); }"),
    ] {
        assert!(matches!(run(name, source), Err(FunctionError::Thrown(_))), "{name}");
    }
    let memory = run("memory", "function handler(e) { return { uri: '/' + 'x'.repeat(64 << 20) }; }").unwrap_err();
    assert!(
        matches!(&memory, FunctionError::Thrown(text) if text.contains("memory")),
        "{memory:?}"
    );
    assert!(matches!(run("syntax", "function handler(e) {"), Err(FunctionError::Syntax(_))));
    assert!(matches!(run("nohandler", "var x = 1;"), Err(FunctionError::NoHandler)));
    for garbage in [
        "function handler(e) { return 42; }",
        "function handler(e) { return { uri: 'no-slash' }; }",
    ] {
        let output = run("garbage", garbage).unwrap().output;
        assert!(request_outcome(&output).is_err(), "{garbage}");
    }
    let split = run(
        "split",
        "function handler(e) { e.request.headers['x'] = { value: 'a\\r\\nHost: evil' }; return e.request; }",
    );
    assert!(
        request_outcome(&split.unwrap().output).is_err(),
        "a header that would split the request"
    );

    // Nothing one invocation leaves reaches the next: its variables are its
    // own, and the realm's objects are frozen.
    let counter = code(
        "counter",
        "var count = 0; function handler(e) { count += 1; e.request.headers['x-count'] = { value: String(count) }; return e.request; }",
    );
    for _ in 0..3 {
        let output = invoke(&counter, &event).unwrap().output;
        assert_eq!(output["headers"]["x-count"]["value"], "1");
    }
    for (name, source) in [
        (
            "global",
            "function handler(e) { globalThis.leak = e.request.uri; return e.request; }",
        ),
        ("prototype", "function handler(e) { Array.prototype.leak = 1; return e.request; }"),
        ("console", "function handler(e) { console.log = null; return e.request; }"),
    ] {
        assert!(matches!(run(name, source), Err(FunctionError::Thrown(_))), "{name}");
    }
    let reads = run(
        "reads",
        "function handler(e) { e.request.headers['x'] = { value: typeof leak + [].leak }; return e.request; }",
    );
    assert_eq!(reads.unwrap().output["headers"]["x"]["value"], "undefinedundefined");
    // The engine still runs a good function after every failure above.
    assert!(invoke(&code("rewrite", REWRITE), &event).is_ok());
}

#[test]
fn the_helper_modules_are_cloudfronts() {
    let source = r#"function handler(e) {
        var crypto = require('crypto'), qs = require('querystring');
        console.log('hashing', { n: 1 });
        e.request.headers['x-sha256'] = { value: crypto.createHash('sha256').update('abc').digest('hex') };
        e.request.headers['x-hmac'] = { value: crypto.createHmac('sha256', 'key').update('The quick brown fox jumps over the lazy dog').digest('hex') };
        e.request.headers['x-qs'] = { value: qs.stringify(qs.parse('a=1&b=x%20y')) };
        return e.request;
    }"#;
    let invocation = invoke(&code("modules", source), &request_event(&view("/a", None, vec![]))).unwrap();
    let headers = &invocation.output["headers"];
    assert_eq!(
        headers["x-sha256"]["value"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        headers["x-hmac"]["value"],
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
    assert_eq!(headers["x-qs"]["value"], "a=1&b=x%20y");
    assert_eq!(invocation.logs, ["hashing {\"n\":1}"]);
    assert!(invocation.utilization <= 100);
}

#[test]
fn async_handlers_and_imports_of_cloudfronts_modules_run_as_at_cloudfront() {
    let source = r#"import crypto from 'crypto';
import cf from 'cloudfront';
async function digest(text) { return crypto.createHash('sha1').update(text).digest('hex'); }
async function handler(event) {
    var request = event.request;
    request.headers['x-digest'] = { value: await digest(request.uri) };
    request.headers['x-kvs'] = { value: typeof cf.kvs };
    return request;
}"#;
    let output = invoke(&code("async", source), &request_event(&view("/a", None, vec![])))
        .unwrap()
        .output;
    assert_eq!(output["headers"]["x-digest"]["value"], sha1_hex("/a"));
    assert_eq!(output["headers"]["x-kvs"]["value"], "function");
    let rejected = invoke(
        &code("rejects", "async function handler(e) { throw new Error('later'); }"),
        &request_event(&view("/a", None, vec![])),
    );
    assert_eq!(rejected.unwrap_err(), FunctionError::Thrown("Error: later".into()));
    let never = invoke(
        &code("never", "function handler(e) { return new Promise(function () {}); }"),
        &request_event(&view("/a", None, vec![])),
    );
    assert!(
        matches!(never, Err(FunctionError::Thrown(_))),
        "a promise nothing can settle: {never:?}"
    );
    let kvs = invoke(
        &code(
            "kvs",
            "import cf from 'cloudfront'; async function handler(e) { await cf.kvs().get('k'); return e.request; }",
        ),
        &request_event(&view("/a", None, vec![])),
    );
    assert!(
        matches!(&kvs, Err(FunctionError::Thrown(text)) if text.contains("key value store")),
        "{kvs:?}"
    );
}

fn sha1_hex(text: &str) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(text.as_bytes()))
}

const KVS_READER: &str = r#"
import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) {
    const request = event.request;
    const target = await kvs.get(request.uri, { format: "string" });
    const settings = await kvs.get("settings", { format: "json" });
    const bytes = await kvs.get("bytes", { format: "bytes" });
    const meta = await kvs.meta();
    request.uri = target;
    request.headers['x-kvs'] = { value: [settings.mode, bytes.length, meta.keyCount, await kvs.exists("nope")].join(",") };
    return request;
}"#;

/// `source` (compiled once per `name`) with a store of three keys.
fn with_store(name: &str, source: &str, id: &str) -> FunctionCode {
    let items = [("/old", "/new"), ("settings", r#"{"mode":"dark"}"#), ("bytes", "é€")];
    FunctionCode {
        store: Some(Arc::new(KeyValues {
            id: id.into(),
            items: items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            created: 1_800_000_000,
            updated: 1_800_000_100,
        })),
        ..code(name, source)
    }
}

#[test]
fn a_function_reads_its_key_value_store_in_every_format() {
    let event = request_event(&view("/old", None, vec![("host", "h")]));
    let output = invoke(&with_store("reader", KVS_READER, "kvs-1"), &event).unwrap().output;
    assert_eq!(output["uri"], "/new");
    // "é€" is 2 + 3 bytes of UTF-8; three keys; "nope" is absent.
    assert_eq!(output["headers"]["x-kvs"]["value"], "dark,5,3,false");

    let missing = invoke(
        &with_store("reader", KVS_READER, "kvs-1"),
        &request_event(&view("/absent", None, vec![])),
    );
    assert!(
        matches!(&missing, Err(FunctionError::Thrown(message)) if message.contains("not found")),
        "{missing:?}"
    );
}

#[test]
fn a_function_reads_no_store_but_its_own_and_cannot_write_one() {
    let other = "import cf from 'cloudfront';\nconst kvs = cf.kvs('another-store');\nfunction handler(event) { return event.request; }";
    let refused = invoke(&with_store("other", other, "kvs-1"), &request_event(&view("/", None, vec![])));
    assert!(
        matches!(&refused, Err(FunctionError::Thrown(message)) if message.contains("not associated")),
        "{refused:?}"
    );
    let none = "import cf from 'cloudfront';\nconst kvs = cf.kvs();\nfunction handler(event) { return event.request; }";
    assert!(matches!(
        invoke(&code("none", none), &request_event(&view("/", None, vec![]))),
        Err(FunctionError::Thrown(_))
    ));
    let writer = r#"
import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) {
    try { kvs.put = function () {}; } catch (e) {}
    try { kvs.get = async function () { return "/forged"; }; } catch (e) {}
    event.request.uri = await kvs.get("/old");
    return event.request;
}"#;
    let output = invoke(&with_store("writer", writer, "kvs-1"), &request_event(&view("/old", None, vec![])))
        .unwrap()
        .output;
    assert_eq!(output["uri"], "/new", "the handle is frozen");
    assert!(output.get("put").is_none());
    // The store of one invocation is gone by the next.
    let after = invoke(&code("none", none), &request_event(&view("/", None, vec![])));
    assert!(after.is_err(), "no store is left over: {after:?}");
}
