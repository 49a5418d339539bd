//! The text a request's workload is recognised by: its system prompt and its last user turn,
//! read from either protocol's body (OpenAI `messages` with `system`/`developer` roles;
//! Anthropic's top-level `system` and `messages`), content given as a string or as parts.

use serde_json::Value;

/// The text parts of a message content: a string, or the `text` of each text part.
fn content_text(content: &Value, out: &mut String) {
    match content {
        Value::String(text) => push(out, text),
        Value::Array(parts) => {
            for part in parts {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    push(out, text);
                }
            }
        }
        _ => {}
    }
}

fn push(out: &mut String, text: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(text);
}

/// `(system prompt, last user turn)`; `None` when the request has no user turn with text.
pub fn workload_text(body: &Value) -> Option<(String, String)> {
    let mut system = String::new();
    if let Some(top) = body.get("system") {
        content_text(top, &mut system);
    }
    let messages = body.get("messages").and_then(Value::as_array)?;
    let mut last_user = None;
    for message in messages {
        let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
        let Some(content) = message.get("content") else { continue };
        match role {
            "system" | "developer" => content_text(content, &mut system),
            "user" => last_user = Some(content),
            _ => {}
        }
    }
    let mut user = String::new();
    content_text(last_user?, &mut user);
    (!user.is_empty()).then_some((system, user))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_protocols_and_both_content_shapes() {
        let openai = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}]}
        ]});
        assert_eq!(workload_text(&openai), Some(("be brief".into(), "second".into())));
        let anthropic = json!({"system": [{"type": "text", "text": "rules"}],
            "messages": [{"role": "user", "content": "question"}]});
        assert_eq!(workload_text(&anthropic), Some(("rules".into(), "question".into())));
        assert_eq!(
            workload_text(&json!({"messages": [{"role": "assistant", "content": "x"}]})),
            None
        );
        assert_eq!(workload_text(&json!({"messages": "nope"})), None);
    }
}
