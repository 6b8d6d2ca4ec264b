//! One QuickJS realm per thread: built once, frozen, shared by every
//! function version that thread runs (each compiled once into a factory).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use rquickjs::context::intrinsic::{Date, Eval, Json, MapSet, Promise, RegExp, RegExpCompiler, TypedArrays};
use rquickjs::{Context, Ctx, Function, Persistent, Runtime, Value};

use std::sync::Arc;

use super::{COMPUTE_BUDGET, FunctionCode, FunctionError, Invocation, KeyValues};

/// The realm's memory: enough for any function CloudFront accepts (its
/// limit is 2 MB per invocation), little enough that a hostile one cannot
/// grow the node.
const MEMORY_LIMIT: usize = 16 << 20;
const STACK_LIMIT: usize = 256 << 10;
/// Compiled versions one thread keeps; past it all are compiled again.
const KEPT_VERSIONS: usize = 256;
/// `console.log` lines kept per invocation, and bytes per line.
const LOG_LINES: usize = 64;
const LOG_LINE_BYTES: usize = 1024;

/// What the realm offers beside the language: `console.log`, `require`
/// for CloudFront's modules; then everything reachable from the global
/// object is frozen.
const PRELUDE: &str = include_str!("prelude.js");

pub struct Engine {
    // The persistent functions are dropped before the context (which keeps
    // its runtime alive, limits and interrupt handler included).
    factories: HashMap<(String, String), Persistent<Function<'static>>>,
    context: Context,
    deadline: Rc<Cell<Option<Instant>>>,
    logs: Rc<RefCell<Vec<String>>>,
    /// The running function's key value store, for `cloudfront.kvs()`.
    store: Rc<RefCell<Option<Arc<KeyValues>>>>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

/// Runs `work` with this thread's engine, made on first use.
pub fn with_engine<T>(work: impl FnOnce(&mut Engine) -> Result<T, FunctionError>) -> Result<T, FunctionError> {
    ENGINE.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(Engine::new().map_err(|error| FunctionError::Thrown(format!("the JavaScript engine did not start: {error}")))?);
        }
        work(slot.as_mut().expect("made above"))
    })
}

impl Engine {
    fn new() -> rquickjs::Result<Engine> {
        let runtime = Runtime::new()?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        runtime.set_max_stack_size(STACK_LIMIT);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::default();
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|deadline| Instant::now() > deadline)
        })));
        let context = Context::custom::<(Date, Eval, RegExpCompiler, RegExp, Json, MapSet, TypedArrays, Promise)>(&runtime)?;
        let logs: Rc<RefCell<Vec<String>>> = Rc::default();
        let store: Rc<RefCell<Option<Arc<KeyValues>>>> = Rc::default();
        let kept = logs.clone();
        context.with(|ctx| {
            let log = Function::new(ctx.clone(), move |line: String| {
                let mut logs = kept.borrow_mut();
                if logs.len() < LOG_LINES {
                    logs.push(line.chars().take(LOG_LINE_BYTES).collect());
                }
            })?;
            ctx.globals().set("__log", log)?;
            let hash = Function::new(ctx.clone(), super::event::hash)?;
            ctx.globals().set("__hash", hash)?;
            install_store(&ctx, &store)?;
            ctx.eval::<(), _>(PRELUDE)
        })?;
        Ok(Engine {
            factories: HashMap::new(),
            context,
            deadline,
            logs,
            store,
        })
    }

    /// The factory of `code`'s version, compiled on first use: each call
    /// runs the code's top level afresh and returns its `handler`.
    fn factory(&mut self, code: &FunctionCode) -> Result<Persistent<Function<'static>>, FunctionError> {
        let key = (code.name.clone(), code.version.clone());
        if let Some(factory) = self.factories.get(&key) {
            return Ok(factory.clone());
        }
        if self.factories.len() >= KEPT_VERSIONS {
            self.factories.clear();
        }
        let wrapped = format!(
            "(function () {{ \"use strict\";\n{}\n;return typeof handler === \"function\" ? handler : undefined; }})",
            imports_as_requires(&code.source)
        );
        let factory = self.context.with(|ctx| match ctx.eval::<Function, _>(wrapped) {
            Ok(factory) => Ok(Persistent::save(&ctx, factory)),
            Err(error) => Err(FunctionError::Syntax(exception_text(&ctx, error))),
        })?;
        self.factories.insert(key, factory.clone());
        Ok(factory)
    }

    /// Runs `code`'s handler on `event`; with no event, only its top level
    /// (to learn that it defines a handler).
    pub fn invoke(&mut self, code: &FunctionCode, event: Option<&serde_json::Value>) -> Result<Invocation, FunctionError> {
        let factory = self.factory(code)?;
        self.logs.borrow_mut().clear();
        self.store.replace(code.store.clone());
        let started = Instant::now();
        self.deadline.set(Some(started + COMPUTE_BUDGET));
        let result = self.context.with(|ctx| -> Result<serde_json::Value, FunctionError> {
            let factory = factory.restore(&ctx).map_err(|error| FunctionError::Thrown(error.to_string()))?;
            let thrown = |error| FunctionError::Thrown(exception_text(&ctx, error));
            let handler: Value = factory.call(()).map_err(thrown)?;
            let Some(handler) = handler.into_function() else {
                return Err(FunctionError::NoHandler);
            };
            let Some(event) = event else {
                return Ok(serde_json::Value::Null);
            };
            let event = to_js(&ctx, event).map_err(thrown)?;
            let output: Value = handler.call((event,)).map_err(thrown)?;
            // An async handler's promise is driven to its end here: there
            // are no timers or I/O, so one still pending then never ends.
            let output = match output.as_promise() {
                Some(promise) => promise.finish::<Value>().map_err(thrown)?,
                None => output,
            };
            // Nothing this invocation scheduled runs in the next one's time.
            while ctx.execute_pending_job() {}
            from_js(&output, 0)
                .map_err(FunctionError::InvalidOutput)?
                .ok_or_else(|| FunctionError::InvalidOutput("the handler returned nothing".into()))
        });
        self.deadline.set(None);
        self.store.take();
        let elapsed = started.elapsed();
        let result = match result {
            Err(FunctionError::Thrown(_)) if elapsed > COMPUTE_BUDGET => Err(FunctionError::OverBudget),
            other => other,
        };
        let utilization = (elapsed.as_micros() * 100 / COMPUTE_BUDGET.as_micros()).min(100) as u32;
        result.map(|output| Invocation {
            output,
            logs: self.logs.take(),
            utilization,
        })
    }
}

/// The host side of `cloudfront.kvs()`, reading `store` (the running
/// function's): `__kvs_id()` its id (or undefined), `__kvs_get(key)` a
/// value (or undefined), `__kvs_meta()` its times and key count.
fn install_store(ctx: &Ctx<'_>, store: &Rc<RefCell<Option<Arc<KeyValues>>>>) -> rquickjs::Result<()> {
    let current = store.clone();
    let id = Function::new(ctx.clone(), move || current.borrow().as_ref().map(|store| store.id.clone()))?;
    let current = store.clone();
    let get = Function::new(ctx.clone(), move |key: String| current.borrow().as_ref()?.items.get(&key).cloned())?;
    let current = store.clone();
    let meta = Function::new(ctx.clone(), move || {
        current
            .borrow()
            .as_ref()
            .map(|store| vec![store.created as f64, store.updated as f64, store.items.len() as f64])
    })?;
    let globals = ctx.globals();
    globals.set("__kvs_id", id)?;
    globals.set("__kvs_get", get)?;
    globals.set("__kvs_meta", meta)
}

/// The deepest output a handler may return (CloudFront's objects are
/// three levels deep); deeper, or cyclic, is an invalid output.
const MAX_OUTPUT_DEPTH: usize = 16;

/// `value` as a JavaScript value of this realm: built directly, not
/// through JSON text (half of an invocation's cost went to JSON).
fn to_js<'js>(ctx: &Ctx<'js>, value: &serde_json::Value) -> rquickjs::Result<Value<'js>> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => Value::new_null(ctx.clone()),
        Json::Bool(flag) => Value::new_bool(ctx.clone(), *flag),
        Json::Number(number) => match number.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(small) => Value::new_int(ctx.clone(), small),
            None => Value::new_number(ctx.clone(), number.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(text) => rquickjs::String::from_str(ctx.clone(), text)?.into_value(),
        Json::Array(items) => {
            let array = rquickjs::Array::new(ctx.clone())?;
            for (index, item) in items.iter().enumerate() {
                array.set(index, to_js(ctx, item)?)?;
            }
            array.into_value()
        }
        Json::Object(entries) => {
            let object = rquickjs::Object::new(ctx.clone())?;
            for (name, item) in entries {
                object.set(name.as_str(), to_js(ctx, item)?)?;
            }
            object.into_value()
        }
    })
}

/// What a handler returned, read as `JSON.stringify` reads it: `None` for
/// what JSON has no value for (undefined, functions, symbols).
fn from_js(value: &Value<'_>, depth: usize) -> Result<Option<serde_json::Value>, String> {
    use serde_json::Value as Json;
    if depth > MAX_OUTPUT_DEPTH {
        return Err(format!(
            "the output is nested deeper than {MAX_OUTPUT_DEPTH} levels (or refers to itself)"
        ));
    }
    let unreadable = |error: rquickjs::Error| error.to_string();
    if value.is_null() {
        return Ok(Some(Json::Null));
    }
    if let Some(flag) = value.as_bool() {
        return Ok(Some(Json::Bool(flag)));
    }
    if let Some(number) = value.as_number() {
        // As JSON.stringify writes it: a whole number without a fraction.
        let whole = number.fract() == 0.0 && number.abs() < 9.0e15;
        return Ok(Some(match whole {
            true => Json::from(number as i64),
            false => serde_json::Number::from_f64(number).map_or(Json::Null, Json::Number),
        }));
    }
    if let Some(text) = value.as_string() {
        return Ok(Some(Json::String(text.to_string().map_err(unreadable)?)));
    }
    if value.is_function() || value.is_undefined() || value.is_symbol() {
        return Ok(None);
    }
    if let Some(array) = value.as_array() {
        let mut items = Vec::with_capacity(array.len());
        for item in array.iter::<Value>() {
            items.push(from_js(&item.map_err(unreadable)?, depth + 1)?.unwrap_or(Json::Null));
        }
        return Ok(Some(Json::Array(items)));
    }
    let Some(object) = value.as_object() else {
        return Ok(None);
    };
    let mut entries = serde_json::Map::new();
    for entry in object.props::<String, Value>() {
        let (name, item) = entry.map_err(unreadable)?;
        if let Some(item) = from_js(&item, depth + 1)? {
            entries.insert(name, item);
        }
    }
    Ok(Some(Json::Object(entries)))
}

/// `source` with its top-level `import NAME from 'MODULE'` (and `import
/// {A, B} from 'MODULE'`) lines written as `require` calls: cloudfront-js-2.0
/// code imports CloudFront's modules so, and runs here inside a function,
/// where `import` is no statement.
fn imports_as_requires(source: &str) -> String {
    source
        .lines()
        .map(|line| {
            let Some(rest) = line.trim_start().strip_prefix("import ") else {
                return line.to_owned();
            };
            let (statement, after) = rest.split_once(';').unwrap_or((rest, ""));
            let Some((binding, module)) = statement.rsplit_once(" from ") else {
                return line.to_owned();
            };
            let module = module.trim();
            let quoted = module.len() > 2
                && ((module.starts_with('\'') && module.ends_with('\'')) || (module.starts_with('"') && module.ends_with('"')));
            match quoted {
                true => format!("const {} = require({module});{after}", binding.trim()),
                false => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The message of the exception `error` stands for.
fn exception_text(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    if !matches!(error, rquickjs::Error::Exception) {
        return error.to_string();
    }
    let caught = ctx.catch();
    if let Some(object) = caught.as_object() {
        let name: Option<String> = object.get("name").ok();
        let message: Option<String> = object.get("message").ok();
        if let Some(message) = message {
            return format!("{}: {message}", name.unwrap_or_else(|| "Error".into()));
        }
    }
    caught
        .as_string()
        .and_then(|text| text.to_string().ok())
        .unwrap_or_else(|| "an exception".into())
}
