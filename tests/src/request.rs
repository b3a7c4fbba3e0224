//! Parsing and validating the JSON bodies of the LLM endpoints into what the simulation needs
//! (model, streaming flags, token budget, prompt size). Every failure is a message for a 400;
//! nothing here panics, whatever the input.

use serde_json::{Map, Value};

use crate::prefix::BlockHasher;

/// Which OpenAI endpoint a body was posted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completion,
    Embedding,
}

/// The parts of a request the simulation uses.
#[derive(Clone, Debug)]
pub(crate) struct LlmRequest {
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u32>,
    /// Whitespace-separated words of the prompt (at least 1).
    pub prompt_tokens: u32,
    /// Embedding inputs, one text per vector (empty for the generating endpoints).
    pub inputs: Vec<String>,
    /// The prompt's full blocks for the prefix cache (chat: each message's role, then its
    /// words; completions: the words or token ids; embeddings: none).
    pub blocks: Vec<u64>,
    /// Chat with `continue_final_message`: the words of the final (assistant) message, which
    /// the generation continues after (vLLM's partial-assistant-message continuation).
    pub continue_after: u32,
}

/// Parses `body` as a request for `endpoint`.
pub(crate) fn parse(endpoint: Endpoint, body: &[u8]) -> Result<LlmRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("The request body must be a JSON object.".to_string());
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.clone(),
        Some(_) => return Err("Field `model` must be a string.".to_string()),
        None => return Err("Field required: `model`.".to_string()),
    };
    let stream = optional_bool(&obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(opts)) => optional_bool(opts, "include_usage")?.unwrap_or(false),
        Some(_) => return Err("Field `stream_options` must be an object.".to_string()),
    };
    let max_tokens = match endpoint {
        Endpoint::Chat => match optional_count(&obj, "max_completion_tokens")? {
            Some(n) => Some(n),
            None => optional_count(&obj, "max_tokens")?,
        },
        Endpoint::Completion => optional_count(&obj, "max_tokens")?,
        Endpoint::Embedding => None,
    };
    let continue_after = match endpoint {
        Endpoint::Chat => continuation(&obj)?,
        _ => 0,
    };
    let mut blocks = BlockHasher::default();
    let (words, inputs) = match endpoint {
        Endpoint::Chat => (
            chat_words(required(&obj, "messages")?, &mut blocks)?,
            Vec::new(),
        ),
        Endpoint::Completion => (
            prompt_words(required(&obj, "prompt")?, &mut blocks)?,
            Vec::new(),
        ),
        Endpoint::Embedding => {
            let inputs = embedding_inputs(required(&obj, "input")?)?;
            let words = inputs.iter().map(|t| word_count(t)).sum();
            (words, inputs)
        }
    };
    Ok(LlmRequest {
        endpoint,
        model,
        stream,
        include_usage,
        max_tokens,
        prompt_tokens: saturate(words).max(1),
        inputs,
        blocks: blocks.finish(),
        continue_after,
    })
}

/// vLLM's `continue_final_message` / `add_generation_prompt` (default true) pair: with the
/// first set, the final message must be the assistant's and the second must be false. Returns
/// the words of that final message (0 without `continue_final_message`).
fn continuation(obj: &Map<String, Value>) -> Result<u32, String> {
    let cont = optional_bool(obj, "continue_final_message")?.unwrap_or(false);
    let add = optional_bool(obj, "add_generation_prompt")?.unwrap_or(true);
    if !cont {
        return Ok(0);
    }
    if add {
        return Err(
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
                .to_string(),
        );
    }
    let last = obj
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last());
    match last {
        Some(m) if m.get("role").and_then(Value::as_str) == Some("assistant") => {
            let text = m.get("content").and_then(Value::as_str).unwrap_or("");
            Ok(saturate(word_count(text)))
        }
        _ => Err(
            "`continue_final_message` needs the final message to be the assistant's.".to_string(),
        ),
    }
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(format!("Field required: `{field}`.")),
        Some(v) => Ok(v),
    }
}

fn optional_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("Field `{field}` must be a boolean.")),
    }
}

/// A positive integer field such as `max_tokens` (values above `u32::MAX` saturate).
fn optional_count(obj: &Map<String, Value>, field: &str) -> Result<Option<u32>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v >= 1 => Ok(Some(u32::try_from(v).unwrap_or(u32::MAX))),
            _ => Err(format!("Field `{field}` must be an integer >= 1, got {n}.")),
        },
        Some(_) => Err(format!("Field `{field}` must be an integer.")),
    }
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Words in all message contents (string content or text parts), fed to `blocks` after each
/// message's role marker.
fn chat_words(messages: &Value, blocks: &mut BlockHasher) -> Result<usize, String> {
    let Value::Array(messages) = messages else {
        return Err("Field `messages` must be a list of messages.".to_string());
    };
    let mut words = 0usize;
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(format!("`messages[{i}]` must be an object."));
        };
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        blocks.push(&format!("<|{role}|>"));
        words += match message.get("content") {
            None | Some(Value::Null) => 0,
            Some(Value::String(s)) => {
                blocks.push_words(s);
                word_count(s)
            }
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .map(|t| {
                    blocks.push_words(t);
                    word_count(t)
                })
                .sum(),
            Some(_) => {
                return Err(format!(
                    "`messages[{i}].content` must be a string or a list of parts."
                ))
            }
        };
    }
    Ok(words)
}

/// Words of a completion prompt: a string, a list of strings, or token ids (one word each),
/// fed to `blocks`.
fn prompt_words(prompt: &Value, blocks: &mut BlockHasher) -> Result<usize, String> {
    const MSG: &str =
        "Field `prompt` must be a string, a list of strings, or a list of token-id lists.";
    match prompt {
        Value::String(s) => {
            blocks.push_words(s);
            Ok(word_count(s))
        }
        Value::Array(items) => items.iter().try_fold(0usize, |acc, item| {
            let n = match item {
                Value::String(s) => {
                    blocks.push_words(s);
                    word_count(s)
                }
                Value::Number(id) => {
                    blocks.push(&id.to_string());
                    1
                }
                Value::Array(ids) if ids.iter().all(Value::is_number) => {
                    ids.iter().for_each(|id| blocks.push(&id.to_string()));
                    ids.len()
                }
                _ => return Err(MSG.to_string()),
            };
            Ok(acc + n)
        }),
        _ => Err(MSG.to_string()),
    }
}

/// Embedding inputs as texts: a string, a list of strings, token ids, or lists of token ids.
fn embedding_inputs(input: &Value) -> Result<Vec<String>, String> {
    const MSG: &str =
        "Field `input` must be a string, a list of strings, or a list of token-id lists.";
    let inputs = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => {
            vec![ids_as_text(items)]
        }
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Array(ids) if ids.iter().all(Value::is_number) => Ok(ids_as_text(ids)),
                _ => Err(MSG.to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(MSG.to_string()),
    };
    if inputs.is_empty() {
        return Err("Field `input` must not be empty.".to_string());
    }
    Ok(inputs)
}

fn ids_as_text(ids: &[Value]) -> String {
    ids.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words_in_chat_and_parts() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"a b"},
            {"role":"user","content":[{"type":"text","text":"c d e"},{"type":"image_url"}]}],
            "max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}"#;
        let r = parse(Endpoint::Chat, body).expect("valid");
        assert_eq!(r.prompt_tokens, 5);
        assert_eq!(r.max_tokens, Some(3));
        assert!(r.stream && r.include_usage);
    }

    #[test]
    fn chat_prompts_are_blocked_with_their_roles() {
        let ctx = "w ".repeat(40);
        let ask = |q: &str, role: &str| {
            let body = serde_json::json!({"model": "m", "messages": [
                {"role": "system", "content": ctx},
                {"role": role, "content": q},
            ]});
            parse(Endpoint::Chat, body.to_string().as_bytes())
                .expect("valid")
                .blocks
        };
        let a = ask("first question", "user");
        let b = ask("another one entirely", "user");
        // 1 role marker + 40 words = 2 full blocks of the shared context, then the question.
        assert_eq!(a.len(), 2);
        assert_eq!(a[..2], b[..2]);
        let long_a = ask(&"q ".repeat(20), "user");
        let long_b = ask(&"q ".repeat(20), "assistant");
        assert_eq!(long_a[..2], long_b[..2]);
        assert_ne!(long_a[2], long_b[2], "the role is part of the prompt");
        let r = parse(
            Endpoint::Completion,
            br#"{"model":"m","prompt":[[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]]}"#,
        )
        .expect("ids");
        assert_eq!(r.blocks.len(), 1);
        let r = parse(
            Endpoint::Embedding,
            br#"{"model":"m","input":"a b c d e f g h i j k l m n o p q"}"#,
        )
        .expect("ok");
        assert!(r.blocks.is_empty());
    }

    #[test]
    fn continue_final_message_like_vllm() {
        let body = |extra: &str| {
            format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"q"}},
                {{"role":"assistant","content":"tok0 tok1 tok2 "}}]{extra}}}"#
            )
        };
        let r = parse(Endpoint::Chat, body("").as_bytes()).expect("plain");
        assert_eq!(r.continue_after, 0);
        let ok = r#","continue_final_message":true,"add_generation_prompt":false"#;
        let r = parse(Endpoint::Chat, body(ok).as_bytes()).expect("continued");
        assert_eq!(r.continue_after, 3);
        assert_eq!(
            r.prompt_tokens, 4,
            "the partial answer is part of the prompt"
        );
        // add_generation_prompt defaults to true, which vLLM refuses together with it.
        let both = r#","continue_final_message":true"#;
        assert!(parse(Endpoint::Chat, body(both).as_bytes()).is_err());
        let user_last = br#"{"model":"m","messages":[{"role":"user","content":"q"}],
            "continue_final_message":true,"add_generation_prompt":false}"#;
        assert!(parse(Endpoint::Chat, user_last).is_err());
        let bad = r#","continue_final_message":"yes""#;
        assert!(parse(Endpoint::Chat, body(bad).as_bytes()).is_err());
    }

    #[test]
    fn empty_prompt_counts_one_token() {
        let r = parse(Endpoint::Completion, br#"{"model":"m","prompt":""}"#).expect("valid");
        assert_eq!(r.prompt_tokens, 1);
        let r = parse(Endpoint::Completion, br#"{"model":"m","prompt":[1,2,3]}"#).expect("ids");
        assert_eq!(r.prompt_tokens, 3);
    }

    #[test]
    fn rejects_bad_shapes_without_panicking() {
        for body in [
            &b"{"[..],
            b"[]",
            b"\"x\"",
            b"{}",
            br#"{"model":1,"messages":[]}"#,
            br#"{"model":"m"}"#,
            br#"{"model":"m","messages":"hi"}"#,
            br#"{"model":"m","messages":[1]}"#,
            br#"{"model":"m","messages":[],"max_tokens":0}"#,
            br#"{"model":"m","messages":[],"max_tokens":-1}"#,
            br#"{"model":"m","messages":[],"max_tokens":1.5}"#,
            br#"{"model":"m","messages":[],"stream":"yes"}"#,
            br#"{"model":"m","messages":[],"stream_options":3}"#,
        ] {
            assert!(
                parse(Endpoint::Chat, body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse(Endpoint::Embedding, br#"{"model":"m","input":[]}"#).is_err());
        assert!(parse(Endpoint::Embedding, br#"{"model":"m","input":[{}]}"#).is_err());
    }

    #[test]
    fn embedding_inputs_shapes() {
        let r = parse(Endpoint::Embedding, br#"{"model":"m","input":["a b","c"]}"#).expect("ok");
        assert_eq!(r.inputs.len(), 2);
        assert_eq!(r.prompt_tokens, 3);
        let r = parse(Endpoint::Embedding, br#"{"model":"m","input":[[1,2],[3]]}"#).expect("ok");
        assert_eq!(r.inputs.len(), 2);
        let r = parse(Endpoint::Embedding, br#"{"model":"m","input":[1,2]}"#).expect("ok");
        assert_eq!(r.inputs.len(), 1);
    }
}
