// Run once in each thread's realm before any function: what CloudFront
// Functions offer beside the language, then every object reachable from
// the global object frozen, so that no invocation can leave anything behind.
"use strict";
(function () {
    const log = globalThis.__log;
    const hash = globalThis.__hash;
    const kvsId = globalThis.__kvs_id;
    const kvsGet = globalThis.__kvs_get;
    const kvsMeta = globalThis.__kvs_meta;
    delete globalThis.__log;
    delete globalThis.__hash;
    delete globalThis.__kvs_id;
    delete globalThis.__kvs_get;
    delete globalThis.__kvs_meta;

    globalThis.console = {
        log: function () {
            log(Array.prototype.map.call(arguments, function (part) {
                return typeof part === "string" ? part : JSON.stringify(part);
            }).join(" "));
        },
    };

    const querystring = {
        parse: function (text, separator, equals) {
            const result = {};
            String(text || "").split(separator || "&").forEach(function (pair) {
                if (pair === "") return;
                const at = pair.indexOf(equals || "=");
                const name = decodeURIComponent(at < 0 ? pair : pair.slice(0, at));
                const value = at < 0 ? "" : decodeURIComponent(pair.slice(at + 1));
                if (Object.prototype.hasOwnProperty.call(result, name)) {
                    result[name] = [].concat(result[name], value);
                } else {
                    result[name] = value;
                }
            });
            return result;
        },
        stringify: function (object, separator, equals) {
            return Object.keys(object || {}).map(function (name) {
                return [].concat(object[name]).map(function (value) {
                    return encodeURIComponent(name) + (equals || "=") + encodeURIComponent(value);
                }).join(separator || "&");
            }).join(separator || "&");
        },
        escape: encodeURIComponent,
        unescape: decodeURIComponent,
    };

    function digest(algorithm, key) {
        let data = "";
        return {
            update: function (part) {
                data += String(part);
                return this;
            },
            digest: function (encoding) {
                return hash(String(algorithm), key, data, encoding === undefined ? "" : String(encoding));
            },
        };
    }

    const crypto = {
        createHash: function (algorithm) {
            return digest(algorithm, null);
        },
        createHmac: function (algorithm, key) {
            return digest(algorithm, String(key));
        },
    };

    // A value's UTF-8 bytes, for `get(key, {format: "bytes"})`.
    function utf8(text) {
        const escaped = encodeURIComponent(text);
        const bytes = [];
        for (let i = 0; i < escaped.length; i++) {
            if (escaped[i] === "%") {
                bytes.push(parseInt(escaped.slice(i + 1, i + 3), 16));
                i += 2;
            } else {
                bytes.push(escaped.charCodeAt(i));
            }
        }
        return new Uint8Array(bytes);
    }

    // The function's key value store, read-only, as CloudFront's
    // `cloudfront.kvs()` gives it: `kvs()` or `kvs(id)` with the id of the
    // store associated with the function.
    const cloudfront = {
        kvs: function (id) {
            const associated = kvsId();
            if (associated === undefined || associated === null) {
                throw new Error("no key value store is associated with this function");
            }
            if (id !== undefined && String(id) !== associated) {
                throw new Error("the key value store " + id + " is not associated with this function");
            }
            return Object.freeze({
                get: async function (key, options) {
                    const value = kvsGet(String(key));
                    if (value === undefined || value === null) {
                        throw new Error("Key " + key + " not found");
                    }
                    const format = options === undefined ? "string" : options.format;
                    if (format === undefined || format === "string") return value;
                    if (format === "json") return JSON.parse(value);
                    if (format === "bytes") return utf8(value);
                    throw new Error("format must be string, json or bytes");
                },
                exists: async function (key) {
                    const value = kvsGet(String(key));
                    return value !== undefined && value !== null;
                },
                meta: async function () {
                    const meta = kvsMeta();
                    return {
                        creationDateTime: new Date(meta[0] * 1000).toISOString(),
                        lastUpdatedDateTime: new Date(meta[1] * 1000).toISOString(),
                        keyCount: meta[2],
                    };
                },
            });
        },
    };

    const modules = { querystring: querystring, crypto: crypto, cloudfront: cloudfront };
    globalThis.require = function (name) {
        if (Object.prototype.hasOwnProperty.call(modules, name)) {
            return modules[name];
        }
        throw new Error("Cannot find module '" + name + "'");
    };

    const seen = new Set();
    function freeze(value) {
        if (value === null || (typeof value !== "object" && typeof value !== "function") || seen.has(value)) {
            return;
        }
        seen.add(value);
        Object.freeze(value);
        Reflect.ownKeys(value).forEach(function (key) {
            const property = Object.getOwnPropertyDescriptor(value, key);
            if (!property) return;
            if ("value" in property) freeze(property.value);
            if (property.get) freeze(property.get);
            if (property.set) freeze(property.set);
        });
        freeze(Object.getPrototypeOf(value));
    }
    freeze(globalThis);
})();
