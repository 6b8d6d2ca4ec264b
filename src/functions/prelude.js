// Run once in each thread's realm before any function: what CloudFront
// Functions offer beside the language, then every object reachable from
// the global object frozen, so that no invocation can leave anything behind.
"use strict";
(function () {
    const log = globalThis.__log;
    const hash = globalThis.__hash;
    delete globalThis.__log;
    delete globalThis.__hash;

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

    const cloudfront = {
        kvs: function () {
            throw new Error("no key value store is associated with this function (keyfront has no key value stores yet)");
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
