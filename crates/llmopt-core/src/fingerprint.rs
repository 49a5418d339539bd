//! Stable request fingerprints: the response-cache key and the prompt-prefix hash.
//!
//! A fingerprint is XXH3-128 over a canonical JSON encoding (object keys sorted, no whitespace)
//! written here rather than by `serde_json`, whose key order depends on a cargo feature that any
//! crate in a build may switch on. XXH3 is a published, frozen algorithm, so fingerprints are the
//! same across processes, machines and releases (test vectors in this module pin it).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64_with_seed, xxh3_128};

/// A 128-bit fingerprint, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    pub fn of_bytes(bytes: &[u8]) -> Fingerprint {
        Fingerprint(xxh3_128(bytes))
    }

    pub fn of_json(value: &Value) -> Fingerprint {
        let mut out = Vec::with_capacity(256);
        write_canonical(value, &mut out);
        Fingerprint::of_bytes(&out)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fingerprint, D::Error> {
        let text = String::deserialize(deserializer)?;
        u128::from_str_radix(&text, 16)
            .map(Fingerprint)
            .map_err(|_| serde::de::Error::custom("fingerprint must be 32 hex digits"))
    }
}

/// Request fields that do not change the answer, left out of the request fingerprint. Every
/// other field (including ones this version does not know) is part of it: an unknown field may
/// change the answer, so ignoring it would be unsafe for a cache.
pub const FIELDS_NOT_IN_KEY: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls_hint",
];

/// Fingerprint of everything in a request body that can change the answer.
pub fn request_fingerprint(body: &Value) -> Fingerprint {
    match body {
        Value::Object(map) => {
            let mut out = Vec::with_capacity(256);
            write_object(
                map.iter().filter(|(key, _)| !FIELDS_NOT_IN_KEY.contains(&key.as_str())),
                &mut out,
            );
            Fingerprint::of_bytes(&out)
        }
        other => Fingerprint::of_json(other),
    }
}

/// What a cached answer is bound to besides the request body: who asked, in which protocol,
/// which provider and model will answer, and the forwarded headers that change the answer
/// (`anthropic-version`, `anthropic-beta`, …; names lowercase).
#[derive(Debug, Clone, Copy)]
pub struct CacheScope<'a> {
    pub tenant: Option<&'a str>,
    /// `openai` or `anthropic`: the same body means different answers in each.
    pub protocol: &'a str,
    pub provider: &'a str,
    pub model: &'a str,
    pub headers: &'a [(String, String)],
}

/// The response-cache key: the request fingerprint bound to its [`CacheScope`]. One tenant
/// never shares a key with another, nor one protocol or header set with another.
pub fn cache_key(scope: &CacheScope<'_>, body: &Value) -> Fingerprint {
    let request = request_fingerprint(body);
    let mut bytes = Vec::with_capacity(128 + scope.provider.len() + scope.model.len());
    // Length-prefixed parts so that ("ab","c") and ("a","bc") differ.
    let mut part = |text: &str| {
        bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
    };
    for text in [scope.tenant.unwrap_or(""), scope.protocol, scope.provider, scope.model] {
        part(text);
    }
    let mut headers: Vec<&(String, String)> = scope.headers.iter().collect();
    headers.sort();
    for (name, value) in headers {
        part(name);
        part(value);
    }
    bytes.push(u8::from(scope.tenant.is_some()));
    bytes.extend_from_slice(&request.0.to_le_bytes());
    Fingerprint::of_bytes(&bytes)
}

/// Bytes of prompt per prefix block: about 512 tokens of English JSON text (four bytes a
/// token), the Mooncake traces' block size, so live records and traces are analysed alike.
pub const PREFIX_BLOCK_BYTES: usize = 2_048;

/// Tokens a prefix block stands for (see [`PREFIX_BLOCK_BYTES`]).
pub const PREFIX_BLOCK_TOKENS: u64 = 512;

/// Blocks kept per request at most (about 256 K tokens): a record's size stays bounded.
pub const MAX_PREFIX_BLOCKS: usize = 512;

/// Fingerprints of consecutive prefix blocks of a prompt, as the Mooncake traces' `hash_ids`:
/// `parts` are the prompt's fields in the order a provider caches them (tools, system, then
/// messages), as the client sent their bytes; they are cut into [`PREFIX_BLOCK_BYTES`] chunks
/// and block `i`'s id is a hash of chunk `i` seeded with block `i − 1`'s id, so equal ids mean
/// the prompt is byte-identical up to the end of that block. Only full blocks count (a provider
/// caches whole prefixes, and a trailing partial block is the part that changes). One pass of
/// xxh3 over the bytes: cheap enough for every request (`core/prefix_blocks` bench).
pub fn prefix_blocks(parts: &[&[u8]]) -> Vec<u64> {
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let mut blocks = Vec::with_capacity((total / PREFIX_BLOCK_BYTES).min(MAX_PREFIX_BLOCKS));
    let mut chunk: Vec<u8> = Vec::new();
    let mut previous = 0_u64;
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() && blocks.len() < MAX_PREFIX_BLOCKS {
            let wanted = PREFIX_BLOCK_BYTES - chunk.len();
            if chunk.is_empty() && rest.len() >= PREFIX_BLOCK_BYTES {
                // A whole block inside one part: hashed in place, no copy.
                previous = xxh3_64_with_seed(&rest[..PREFIX_BLOCK_BYTES], previous);
                blocks.push(previous);
                rest = &rest[PREFIX_BLOCK_BYTES..];
                continue;
            }
            let take = wanted.min(rest.len());
            chunk.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if chunk.len() == PREFIX_BLOCK_BYTES {
                previous = xxh3_64_with_seed(&chunk, previous);
                blocks.push(previous);
                chunk.clear();
            }
        }
    }
    blocks
}

/// Fingerprint of the prompt prefix: the system prompt, the tools and every message but the last.
/// Two requests with equal prefix fingerprints could share a provider prompt cache entry.
/// `None` when there is no prefix (a single message and no system prompt or tools).
pub fn prefix_fingerprint(body: &Value) -> Option<Fingerprint> {
    let messages = body.get("messages").and_then(Value::as_array)?;
    let head = &messages[..messages.len().saturating_sub(1)];
    let system = body.get("system");
    let tools = body.get("tools");
    if head.is_empty() && system.is_none() && tools.is_none() {
        return None;
    }
    // The canonical form of `{"messages": head, "system": …, "tools": …}` (keys already in
    // sorted order), written directly rather than by copying the messages into a new object.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"messages\":[");
    for (index, message) in head.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_canonical(message, &mut out);
    }
    out.push(b']');
    for (key, value) in [(&b",\"system\":"[..], system), (&b",\"tools\":"[..], tools)] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            write_canonical(value, &mut out);
        }
    }
    out.push(b'}');
    Some(Fingerprint::of_bytes(&out))
}

/// Canonical JSON: sorted keys, no whitespace, numbers as serde_json prints them.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_json(text.as_str(), out),
        // Scalars have one serde_json spelling each.
        scalar => write_json(scalar, out),
    }
}

/// An object's entries with their keys sorted.
fn write_object<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (index, (key, value)) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json(key.as_str(), out);
        out.push(b':');
        write_canonical(value, out);
    }
    out.push(b'}');
}

/// A string, number, bool or null as serde_json spells it (strings with its escaping), written
/// in place: no `Value`, no intermediate `String`.
fn write_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail, and a string, number, bool or null always serialises.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_and_stream_flags_do_not_matter() {
        let a =
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true});
        let b = json!({"messages": [{"content": "hi", "role": "user"}], "model": "m"});
        assert_eq!(request_fingerprint(&a), request_fingerprint(&b));
    }

    #[test]
    fn everything_that_changes_the_answer_changes_the_key() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let key = |tenant: Option<&str>, provider: &str, model: &str, body: &Value| {
            let scope = CacheScope { tenant, protocol: "openai", provider, model, headers: &[] };
            cache_key(&scope, body)
        };
        let base_key = key(Some("t1"), "openai", "m", &base);
        let variants = [
            json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}]}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": []}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": "be brief"}),
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1}),
        ];
        for variant in &variants {
            assert_ne!(key(Some("t1"), "openai", "m", variant), base_key, "{variant}");
        }
        assert_ne!(key(Some("t2"), "openai", "m", &base), base_key);
        assert_ne!(key(None, "openai", "m", &base), base_key);
        assert_ne!(key(Some("t1"), "azure", "m", &base), base_key);
        assert_ne!(key(Some("t1"), "openai", "m2", &base), base_key);
    }

    #[test]
    fn fingerprints_are_pinned() {
        // Test vectors: XXH3-128 of fixed inputs. If these change, every stored fingerprint and
        // cache key changes meaning.
        assert_eq!(Fingerprint::of_bytes(b"").to_string(), "99aa06d3014798d86001c324468d497f");
        assert_eq!(
            Fingerprint::of_json(&json!({"b": 1, "a": [true, null, "x"]})),
            Fingerprint::of_bytes(br#"{"a":[true,null,"x"],"b":1}"#)
        );
    }

    #[test]
    fn prefix_excludes_the_last_message() {
        let one = json!({"system": "s", "messages": [{"role": "user", "content": "a"}]});
        let two = json!({"system": "s", "messages": [{"role": "user", "content": "b"}]});
        assert_eq!(prefix_fingerprint(&one), prefix_fingerprint(&two));
        assert!(
            prefix_fingerprint(&json!({"messages": [{"role": "user", "content": "a"}]})).is_none()
        );
    }

    #[test]
    fn direct_writers_equal_the_object_they_stand_for() {
        // Strings that need escaping, unicode, floats, nulls: canonical bytes as serde_json
        // spells them.
        let tricky = json!({"z": "quote \" back \\ tab \t nl \n é 😀 \u{1}", "f": 0.1, "n": null});
        let mut out = Vec::new();
        write_canonical(&tricky, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"f":0.1,"n":null,"z":"quote \" back \\ tab \t nl \n é 😀 \u0001"}"#
        );
        // The prefix fingerprint is the fingerprint of the object it describes, built the slow way.
        let bodies = [
            json!({"system": "s", "tools": [{"name": "t"}], "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}),
            json!({"system": null, "messages": [{"role": "user", "content": "a"}]}),
            json!({"tools": [], "messages": [{"role": "user", "content": tricky}, {"role": "user", "content": "x"}]}),
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        ];
        for body in &bodies {
            let mut prefix = serde_json::Map::new();
            for key in ["system", "tools"] {
                if let Some(value) = body.get(key) {
                    prefix.insert(key.to_owned(), value.clone());
                }
            }
            let messages = body["messages"].as_array().unwrap();
            prefix.insert(
                "messages".to_owned(),
                Value::Array(messages[..messages.len() - 1].to_vec()),
            );
            assert_eq!(
                prefix_fingerprint(body),
                Some(Fingerprint::of_json(&Value::Object(prefix)))
            );
            let mut kept = body.as_object().unwrap().clone();
            kept.insert("stream".to_owned(), json!(true));
            assert_eq!(request_fingerprint(&Value::Object(kept)), Fingerprint::of_json(body));
        }
    }

    #[test]
    fn fingerprint_round_trips_through_json() {
        let fingerprint = Fingerprint(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = serde_json::to_string(&fingerprint).unwrap();
        assert_eq!(text, "\"0123456789abcdef0011223344556677\"");
        assert_eq!(serde_json::from_str::<Fingerprint>(&text).unwrap(), fingerprint);
    }

    #[test]
    fn prefix_blocks_are_equal_exactly_as_far_as_the_prompts_are() {
        let system = vec![b's'; 3 * PREFIX_BLOCK_BYTES + 100];
        let first = prefix_blocks(&[&system, b"[{\"role\":\"user\",\"content\":\"one\"}]"]);
        let second = prefix_blocks(&[&system, b"[{\"role\":\"user\",\"content\":\"two\"}]"]);
        assert_eq!(first.len(), 3, "only full blocks");
        assert_eq!(first, second, "the shared system prompt gives the same blocks");
        // Splitting the same bytes differently across parts does not change the blocks.
        let joined: Vec<u8> = system.iter().copied().chain(vec![b'x'; 5_000]).collect();
        let (left, right) = joined.split_at(1_000);
        assert_eq!(prefix_blocks(&[&joined]), prefix_blocks(&[left, right]));
        // A change inside block 2 changes block 2 and every later one, not the ones before.
        let mut changed = joined.clone();
        changed[2 * PREFIX_BLOCK_BYTES + 5] = b't';
        let (a, b) = (prefix_blocks(&[&joined]), prefix_blocks(&[&changed]));
        assert_eq!(a[..2], b[..2]);
        assert!(a[2..].iter().zip(&b[2..]).all(|(x, y)| x != y));
        // Bounded per request.
        let huge = vec![b'h'; (MAX_PREFIX_BLOCKS + 10) * PREFIX_BLOCK_BYTES];
        assert_eq!(prefix_blocks(&[&huge]).len(), MAX_PREFIX_BLOCKS);
        assert!(prefix_blocks(&[]).is_empty());
    }
}
